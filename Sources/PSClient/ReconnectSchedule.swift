import PSTransport

/// When a client that lost its server tries again, and when it gives up. Attempts follow `backoff`
/// from the first failure on; once `giveUpSeconds` have passed without a connection the next failure
/// ends it (the last attempt is made at that deadline, not a backoff step short of it). A connection
/// made starts both the backoff and the deadline over.
///
/// A pure rule: the caller passes the time and the randomness in, so a test can replay any sequence.
public struct ReconnectSchedule: Sendable, Equatable {
    public let backoff: Backoff
    /// How long to go on without a connection; 0: give up at the first failure.
    public let giveUpSeconds: Double
    /// When the first failure since the last connection happened; nil while connected.
    public private(set) var lostAt: Double?
    /// Failed attempts since the last connection.
    public private(set) var failures = 0

    public init(backoff: Backoff, giveUpSeconds: Double) {
        precondition(giveUpSeconds >= 0 && giveUpSeconds.isFinite, "giveUpSeconds \(giveUpSeconds)")
        self.backoff = backoff
        self.giveUpSeconds = giveUpSeconds
    }

    /// The connection was lost, or an attempt to make one failed, at `now` (seconds on any monotonic
    /// clock): the seconds to wait before the next attempt, or nil to give up. `unitRandom` (0...1)
    /// jitters the delay.
    public mutating func failed(now: Double, unitRandom: Double) -> Double? {
        let since = lostAt ?? now
        lostAt = since
        let left = since + giveUpSeconds - now
        guard left > 0 else { return nil }
        defer { failures += 1 }
        return min(backoff.delaySeconds(failures: failures, unitRandom: unitRandom), left)
    }

    /// A connection was made: the next failure starts a new streak.
    public mutating func connected() {
        lostAt = nil
        failures = 0
    }
}
