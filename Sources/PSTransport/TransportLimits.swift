/// Limits of the transport, checked where connections are made and accepted. Frame sizes are the
/// wire's (`WireLimits.frameBytesMax`).
public enum TransportLimits {
    /// Connections one server accepts at once; more are answered `.busy` and closed. A cluster is a
    /// few hundred workers plus a few clients; past that a runaway launcher is likelier than a real
    /// cluster, and each connection costs a file descriptor and up to a frame of buffer.
    public static let connectionsMax = 1024

    /// How long one TCP connect may take before it counts as failed. On a LAN a connect that has not
    /// finished in this time will not; `ReconnectingConnection` then backs off and tries again.
    public static let connectSeconds = 5.0

    /// How long a client waits for the server's answer to its hello. A server that accepts but does not
    /// answer is stuck or is not a ps-server.
    public static let helloReplySeconds = 5.0

    /// How long a TLS handshake may take, on either end. It is two round trips and a few signatures:
    /// milliseconds on a LAN. A handshake that has not finished by then is with a peer that does not
    /// speak TLS (a plaintext server waiting for a frame) or is stuck, and on a server it holds a
    /// connection slot.
    public static let tlsHandshakeSeconds = 5.0

    /// The largest PEM file (certificate, chain, key or CA bundle) read at start-up: a system's whole
    /// CA bundle is about 200 KiB; a larger file is the wrong file.
    public static let pemFileBytesMax = 1 << 20

    /// How long a connection closed after a last message (`close(_:after:)`, a rejected frame) keeps
    /// reading before it is closed outright. Closing with unread input makes the kernel send a reset,
    /// which can destroy the last message before the peer reads it; a peer that is still streaming a
    /// large frame gets this long to stop.
    public static let lingerSeconds = 2.0
}

/// Delays between connection attempts: exponential from `initialSeconds`, capped at `maxSeconds`,
/// each multiplied by a random factor in 1 ± `jitter` so that workers restarted together do not
/// reconnect in lockstep. Workers reconnect with it (`ReconnectingConnection`), and so does `psctl wait`.
public struct Backoff: Sendable, Equatable {
    public var initialSeconds: Double
    public var maxSeconds: Double
    public var jitter: Double

    public init(initialSeconds: Double = 0.1, maxSeconds: Double = 5.0, jitter: Double = 0.2) {
        self.initialSeconds = initialSeconds
        self.maxSeconds = maxSeconds
        self.jitter = jitter
    }

    /// The delay before attempt `failures + 1`, where `failures` attempts in a row have failed.
    /// `unitRandom` is in 0...1 (passed in so a test can pin it).
    public func delaySeconds(failures: Int, unitRandom: Double) -> Double {
        // 2^20 × 0.1 s is far past any cap; clamping the exponent keeps the power finite.
        let growth = Double(1 << min(max(failures, 0), 20))
        let base = min(maxSeconds, initialSeconds * growth)
        return base * (1 + jitter * (2 * unitRandom - 1))
    }
}
