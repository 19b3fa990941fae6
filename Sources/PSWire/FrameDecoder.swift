/// Cuts a connection's byte stream into frames, with no socket: feed it bytes as they arrive with
/// `append`, then call `next()` until it returns nil. The length prefix is checked against
/// `WireLimits.frameBytesMax` before any room is made for the payload, so a hostile length costs
/// nothing. After an error the decoder stays failed: the connection's stream position is lost,
/// and the only sane action is to close it.
public struct FrameDecoder: Sendable {
    /// Received bytes; those before `start` are already consumed.
    private var buffer: [UInt8] = []
    private var start = 0
    private var failure: WireError?

    public init() {}

    /// Bytes received but not yet returned as frames.
    public var bufferedBytes: Int { buffer.count - start }

    /// Adds bytes read from the connection. Ignored once the decoder has failed.
    public mutating func append(_ bytes: some Collection<UInt8>) {
        guard failure == nil else { return }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame's payload (the envelope bytes), or nil until more bytes arrive. The slice
    /// shares the decoder's buffer: decode it before the next `append`, or that append copies the buffer.
    public mutating func nextPayload() throws(WireError) -> ArraySlice<UInt8>? {
        if let failure { throw failure }
        let header = WireLimits.frameHeaderBytes
        guard bufferedBytes >= header else {
            compact()
            return nil
        }
        let length = buffer[start..<start + header].reduce(0) { $0 << 8 | Int($1) }
        guard length <= WireLimits.frameBytesMax else {
            let error = WireError(.tooLarge, field: "frame",
                                  "length \(length) exceeds frameBytesMax (\(WireLimits.frameBytesMax))")
            fail(error)
            throw error
        }
        guard bufferedBytes >= header + length else {
            // The length is now known to be acceptable: make room for the whole frame at once
            // instead of growing the buffer piece by piece.
            compact()
            buffer.reserveCapacity(header + length)
            return nil
        }
        let payload = buffer[start + header..<start + header + length]
        start += header + length
        return payload
    }

    /// The next complete frame decoded and checked, or nil until more bytes arrive.
    public mutating func next() throws(WireError) -> Envelope? {
        guard let payload = try nextPayload() else { return nil }
        do {
            return try Envelope(payload: payload)
        } catch {
            fail(error)
            throw error
        }
    }

    private mutating func fail(_ error: WireError) {
        failure = error
        buffer = []
        start = 0
    }

    /// Drops consumed bytes, keeping the allocation so a steady stream of frames reuses it.
    private mutating func compact() {
        guard start > 0 else { return }
        buffer.removeSubrange(0..<start)
        start = 0
    }
}
