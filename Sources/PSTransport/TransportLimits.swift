/// Limits of the transport, checked where connections are made and accepted. Frame sizes are the
/// wire's (`WireLimits.frameBytesMax`).
public enum TransportLimits {
    /// Connections one server accepts at once; past it the oldest connection that has not said hello
    /// is closed to make room, and when every connection has, the new one is answered `.busy` and
    /// closed. A cluster is a few hundred workers plus a few clients; past that a runaway launcher or a
    /// flood is likelier than a real cluster, and each connection costs a file descriptor.
    public static let connectionsMax = 1024

    /// Connections from one peer address (IP, any port) at once, so that one host cannot take every
    /// slot: a host runs a worker per core or so and a few clients; 256 leaves room for a test machine
    /// that runs many workers on loopback, and 3/4 of `connectionsMax` for the others.
    public static let connectionsPerAddressMax = 256

    /// Connections at once that have not completed their hello (TLS and authentication handshakes
    /// included). A real peer says hello within milliseconds of connecting, so only a flood or a
    /// stuck peer keeps many here; a new connection past this closes the oldest of them.
    public static let pendingConnectionsMax = 256

    /// Connections from one address at once that have not completed their hello; a new one past this
    /// closes that address's oldest. Small, so a flood of idle connections from the host a worker
    /// runs on evicts its own connections, and the worker's, hello'd within milliseconds, gets in.
    public static let pendingConnectionsPerAddressMax = 64

    /// How long a connection may take from accepting to its hello being through (with a token: the
    /// proof too). Real peers take milliseconds; an idle connection holds a slot and a descriptor.
    public static let helloSeconds = 10.0

    /// The largest frame (payload bytes) a connection may send before its hello is through: a hello
    /// or the answer to a challenge is well under 1 KiB. So a peer that has not authenticated can
    /// never make the server hold more than this per connection.
    public static let helloFrameBytesMax = 64 << 10

    /// Frames up to this many payload bytes are not counted against `incompleteFrameBytesMax` and never
    /// wait for room: control messages (a hello, `psctl status`, a heartbeat) must get through while
    /// large frames queue. Per connection that is at most 128 KiB of buffer.
    public static let smallFrameBytesMax = 64 << 10

    /// The bytes of buffer a server holds for incomplete large frames, across all connections. A
    /// connection whose frame would take the total past this stops being read (its sender waits on
    /// TCP) until room returns, except the one whose frame started first, so that frames always
    /// complete. Two maximum frames; a cluster's pushes are a model's size each, mostly a few MB.
    /// The total can pass the cap by one frame (the oldest one) plus what one event-loop turn reads
    /// from each other connection (its socket's receive buffer, a few MB).
    public static let incompleteFrameBytesMax = 128 << 20

    /// How long an incomplete frame may go without a byte arriving (while the server is reading from
    /// its connection) before the connection is closed and its bytes freed. A sender on a LAN stalls
    /// this long only if it is stuck or is not sending on purpose; a stuck worker has also missed its
    /// heartbeats by then.
    public static let incompleteFrameStallSeconds = 15.0

    /// Refusals and evictions of one kind are logged at most once per this many seconds (with the
    /// count since the last line), so that a flood of connections does not flood the log.
    public static let refusalLogSeconds = 10.0

    /// How long a client (`psctl`, `PSClient`) keeps trying a server that answers `busy` before its hello
    /// is through: under a flood the server closes the oldest connections without a hello, which can be a
    /// real client's in the milliseconds before its hello arrives; a few tries later it gets in.
    public static let busyRetrySeconds = 3.0

    /// The pauses between those tries: from 50 ms, doubling to at most 0.5 s, jittered.
    public static let busyRetryBackoff = Backoff(initialSeconds: 0.05, maxSeconds: 0.5)

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
