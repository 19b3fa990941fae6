@_exported import PSCore

/// Why bytes could not become a value (or a value could not become bytes): `field` is the path of
/// the offending field, rooted at the message type (`JobSpec.model.layers[1].units`), and `message`
/// says what was wrong with it. A decode error closes one connection; it never stops a process.
public struct WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What kind of failure, so the transport can pick the error code it answers with.
    public enum Kind: Equatable, Sendable {
        /// The bytes are not a valid message, or a field is missing or out of range.
        case malformed
        /// A frame or message exceeds `WireLimits.frameBytesMax`.
        case tooLarge
        /// A file could not be read or written.
        case io
    }

    public var kind: Kind
    public var field: String
    public var message: String

    public init(_ kind: Kind = .malformed, field: String, _ message: String) {
        self.kind = kind
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}

/// Limits of the wire protocol, checked where bytes enter and leave.
public enum WireLimits {
    /// Sent in `Hello`; a peer speaking another version is refused with `versionMismatch`.
    /// 2: gradients are pushed in push ranges, weights streamed per range, `PushAck.offset`.
    /// 3: a worker's hello carries its compute signature (required), and a bitwise job computes only on
    /// workers whose signature equals its own.
    /// 4: the hello carries a nonce and a server with the cluster's token authenticates both sides with
    /// `AuthChallenge` / `AuthResponse` before anything else.
    public static let protocolVersion: UInt32 = 4

    /// Largest frame payload (the envelope, without the 4-byte length) sent or accepted: PSCore's
    /// `Limits.frameBytesMax`, where `Limits.parametersMax` is derived from it.
    public static let frameBytesMax = Limits.frameBytesMax

    /// Bytes of the big-endian length that precedes every envelope.
    public static let frameHeaderBytes = 4
}
