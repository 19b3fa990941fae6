import Crypto
import Foundation
import PSWire

/// The cluster's shared secret, read from a file (`--auth-token-file`, `PS_AUTH_TOKEN_FILE`). It is never
/// printed: its description is a placeholder, and nothing sends it; peers prove they hold it with HMACs.
public struct AuthToken: Sendable, CustomStringConvertible {
    /// The shortest token accepted: 16 bytes (128 bits of a random token).
    public static let bytesMin = 16
    /// The longest: a token file is one line, not a document.
    public static let bytesMax = 4096

    let key: SymmetricKey

    /// Reads the token: the file's bytes without trailing whitespace (a newline an editor added). The
    /// error names the file and what is wrong, never its contents.
    public init(file path: String) throws(AuthTokenError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw AuthTokenError(path: path, "no such file")
        }
        guard !isDirectory.boolValue else { throw AuthTokenError(path: path, "is a folder, not a token file") }
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        guard (attributes?[.type] as? FileAttributeType) == .typeRegular else {
            throw AuthTokenError(path: path, "is not a regular file")
        }
        if let size = attributes?[.size] as? Int, size > Self.bytesMax + 2 {
            throw AuthTokenError(path: path, "is \(size) bytes; a token file holds one token of at most \(Self.bytesMax) bytes")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw AuthTokenError(path: path, "cannot be read") }
        var bytes = Array(data)
        while let last = bytes.last, last == 0x0A || last == 0x0D || last == 0x20 || last == 0x09 { bytes.removeLast() }
        guard bytes.count >= Self.bytesMin else {
            throw AuthTokenError(path: path, "holds \(bytes.count) bytes; a token needs at least \(Self.bytesMin) "
                + "(make one with: head -c 32 /dev/urandom | base64 > \(path))")
        }
        self.init(bytes: bytes)
    }

    /// A token from its bytes (tests).
    public init(bytes: [UInt8]) {
        key = SymmetricKey(data: bytes)
    }

    public var description: String { "<auth token>" }
}

/// Why a token file cannot be used.
public struct AuthTokenError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var reason: String

    init(path: String, _ reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "auth token file \(path): \(reason)" }
}

/// The proofs of the authentication handshake: HMAC-SHA256 with the token over a transcript that binds
/// the protocol version, the client's role and name and both nonces, with a different label for each
/// side (so a server's proof can never be replayed as a client's). Each part is length-prefixed.
public enum AuthProof {
    /// Bytes in every nonce.
    public static let nonceBytes = 32

    public enum Side: String, Sendable {
        case server = "ps-auth/1 server"
        case client = "ps-auth/1 client"
    }

    /// A fresh random nonce.
    public static func nonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<nonceBytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    public static func proof(_ side: Side, token: AuthToken, hello: Hello, serverNonce: [UInt8]) -> [UInt8] {
        var transcript: [UInt8] = []
        func part(_ bytes: [UInt8]) {
            withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { transcript += $0 }
            transcript += bytes
        }
        part(Array(side.rawValue.utf8))
        withUnsafeBytes(of: hello.protocolVersion.bigEndian) { part(Array($0)) }
        part(Array("\(hello.role)".utf8))
        part(Array(hello.name.utf8))
        part(hello.nonce)
        part(serverNonce)
        return Array(HMAC<SHA256>.authenticationCode(for: transcript, using: token.key))
    }

    /// Whether `proof` is the expected one, compared in constant time.
    public static func verify(_ proof: [UInt8], _ side: Side, token: AuthToken, hello: Hello, serverNonce: [UInt8]) -> Bool {
        let expected = Self.proof(side, token: token, hello: hello, serverNonce: serverNonce)
        guard proof.count == expected.count else { return false }
        var difference: UInt8 = 0
        for (a, b) in zip(proof, expected) { difference |= a ^ b }
        return difference == 0
    }
}

/// Why a server refused a connection's authentication, as the metric's `reason` label.
public enum AuthFailure: String, Sendable, CaseIterable {
    /// The client sent no nonce: it has no token.
    case missing
    /// The client's proof does not match: another token.
    case mismatch
    /// A message out of order during the handshake.
    case protocolViolation = "protocol"
    /// The client closed the connection after the challenge without answering it: the server's proof
    /// did not check out on its side (another token), or it gave up.
    case abandoned
}

/// The server's side of the hello, as a pure state machine driven by each connection's handler: without
/// a token every envelope passes through; with one, a hello is answered with a challenge and held back
/// until the client's proof checks out, and nothing else is let through before that.
public struct ServerHandshake {
    public enum Outcome: Equatable {
        /// Hand these to the coordinator (a hello only once its client is authenticated).
        case forward([Envelope])
        /// Send this to the peer.
        case reply(Envelope)
        /// Send this error, close the connection, count the failure.
        case refuse(ErrorReply, AuthFailure)
    }

    enum State: Equatable {
        case awaitingHello
        case awaitingProof(hello: Envelope, serverNonce: [UInt8])
        case open
        case refused
    }

    let token: AuthToken?
    private(set) var state = State.awaitingHello

    public init(token: AuthToken?) {
        self.token = token
    }

    /// `nonce` makes the server's nonce (fresh randomness in the product, fixed in tests).
    public mutating func receive(_ envelope: Envelope, nonce: () -> [UInt8] = AuthProof.nonce) -> Outcome {
        guard let token else { return .forward([envelope]) }
        switch state {
        case .open:
            return .forward([envelope])
        case .refused:
            return .forward([])
        case .awaitingHello:
            guard case let .hello(hello) = envelope.message else {
                return refuse(envelope, .protocolViolation, "authentication required: the first message must be hello")
            }
            guard hello.nonce.count == AuthProof.nonceBytes else {
                return refuse(envelope, .missing, "this server requires the cluster's token: start the client with "
                    + "--auth-token-file (or PS_AUTH_TOKEN_FILE)")
            }
            let serverNonce = nonce()
            state = .awaitingProof(hello: envelope, serverNonce: serverNonce)
            let proof = AuthProof.proof(.server, token: token, hello: hello, serverNonce: serverNonce)
            return .reply(Envelope(requestId: envelope.requestId, message: .authChallenge(
                AuthChallenge(serverNonce: serverNonce, serverProof: proof))))
        case let .awaitingProof(helloEnvelope, serverNonce):
            guard case let .authResponse(proof) = envelope.message, case let .hello(hello) = helloEnvelope.message else {
                return refuse(envelope, .protocolViolation, "authentication required: expected the answer to the challenge, got \(envelope.message.caseName)")
            }
            guard AuthProof.verify(proof, .client, token: token, hello: hello, serverNonce: serverNonce) else {
                return refuse(envelope, .mismatch, "authentication failed: the client's proof does not match the cluster's token")
            }
            state = .open
            return .forward([helloEnvelope])
        }
    }

    /// The connection closed: a failure to count when it closed between the challenge and its answer.
    public mutating func closed() -> (AuthFailure, String)? {
        guard case .awaitingProof = state else { return nil }
        state = .refused
        return (.abandoned, "the client closed the connection without answering the challenge "
            + "(it holds another token, or does not trust this server)")
    }

    private mutating func refuse(_ envelope: Envelope, _ failure: AuthFailure, _ message: String) -> Outcome {
        state = .refused
        return .refuse(ErrorReply(code: .unauthenticated, message: message), failure)
    }
}

/// The client's side of the hello, pure: what to send first, and what each answer means. With a token
/// the client insists on a challenge whose proof checks out (a server without the token, or one that is
/// not ours, is refused): the authentication is mutual.
public struct ClientHandshake {
    public enum Step: Equatable {
        /// Send this (the answer to the challenge) and wait for the next message.
        case send(Message)
        /// The hello was accepted.
        case done(HelloOk)
        /// The handshake failed: why, for the error the caller reports.
        case fail(String)
    }

    let token: AuthToken?
    /// The hello to send first (with a fresh nonce when there is a token).
    public let hello: Hello
    private var challenged = false

    public init(hello: Hello, token: AuthToken?, nonce: () -> [UInt8] = AuthProof.nonce) {
        var hello = hello
        hello.nonce = token == nil ? [] : nonce()
        self.hello = hello
        self.token = token
    }

    public mutating func receive(_ message: Message) -> Step {
        switch message {
        case let .authChallenge(challenge):
            guard let token else {
                return .fail("the server requires the cluster's token: pass --auth-token-file (or set PS_AUTH_TOKEN_FILE)")
            }
            guard !challenged else { return .fail("the server sent a second challenge") }
            guard AuthProof.verify(challenge.serverProof, .server, token: token, hello: hello, serverNonce: challenge.serverNonce),
                  challenge.serverNonce.count == AuthProof.nonceBytes else {
                return .fail("the server could not prove it holds the cluster's token (the tokens differ, or it is not the cluster's server)")
            }
            challenged = true
            return .send(.authResponse(clientProof: AuthProof.proof(.client, token: token, hello: hello, serverNonce: challenge.serverNonce)))
        case let .helloOk(ok):
            if token != nil && !challenged {
                return .fail("the server did not authenticate itself: it runs without a token (start it with --auth-token-file) "
                    + "or is not the cluster's server")
            }
            return .done(ok)
        case let .error(reply):
            return .fail("server refused hello: \(reply.message) [\(reply.code)]")
        default:
            return .fail("server answered hello with \(message.caseName)")
        }
    }
}

extension AuthToken {
    /// The environment variable a program reads the token file's path from when `--auth-token-file` is not given.
    public static let fileEnvironmentVariable = "PS_AUTH_TOKEN_FILE"

    /// The token named by `--auth-token-file` (`flag`), else by `PS_AUTH_TOKEN_FILE`; nil when neither is set.
    public static func load(flag: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(AuthTokenError) -> AuthToken? {
        guard let path = flag ?? environment[fileEnvironmentVariable].flatMap({ $0.isEmpty ? nil : $0 }) else { return nil }
        return try AuthToken(file: path)
    }
}

/// Whether a server may listen where it was asked: on a loopback address anything goes; anywhere else
/// only with the cluster's token or TLS, unless the operator says `--insecure`.
public enum ListenPolicy {
    /// Whether `host` is a loopback address (only this machine can connect).
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if h == "localhost" || h == "::1" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// Why the server must not start as configured, or nil when it may.
    public static func refusal(host: String, port: Int, authenticated: Bool, tls: Bool, insecure: Bool) -> String? {
        guard !isLoopback(host), !authenticated, !tls, !insecure else { return nil }
        return "refusing to listen on \(host):\(port) with neither a token nor TLS: anyone who can reach that address "
            + "could submit jobs (which make every worker read files), cancel jobs and fetch models. Give "
            + "--auth-token-file FILE (the same token to every worker and psctl) and/or --tls-cert, --tls-key and "
            + "--tls-ca; or --insecure if only trusted hosts can reach the network and you accept that (README, "
            + "'Security model')"
    }
}
