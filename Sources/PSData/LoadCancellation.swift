import Foundation

/// Stops a data load from outside it: the job was cancelled, the server is stopping, or the load ran
/// past its deadline. The readers call `check(file:)` between pieces of work (a read, an inflated block,
/// a few thousand parsed lines), so a load ends within one piece of work of being told to; it throws a
/// `DataError` naming the file and the reason.
public final class LoadCancellation: @unchecked Sendable {
    private let lock = NSLock()
    private var reason: String?
    /// Past this instant the load stops with "took longer than its deadline".
    public let deadline: ContinuousClock.Instant?
    /// The deadline's length, for the message.
    private let seconds: Double?

    /// A load that stops `seconds` from now (never when nil), or earlier when cancelled.
    public init(seconds: Double? = nil) {
        self.seconds = seconds
        deadline = seconds.map { ContinuousClock.now + .milliseconds(Int64(($0 * 1000).rounded(.up))) }
    }

    /// Stops the load; `reason` ends up in its error ("the job was cancelled", "the server is stopping").
    /// Only the first reason counts.
    public func cancel(_ reason: String) {
        lock.withLock { if self.reason == nil { self.reason = reason } }
    }

    /// Why the load must stop, or nil while it may go on.
    public var stopReason: String? {
        if let reason = lock.withLock({ self.reason }) { return reason }
        if let deadline, let seconds, ContinuousClock.now >= deadline {
            return "loading took longer than its deadline of \(seconds) s"
        }
        return nil
    }

    /// Throws a `DataError` naming `file` once the load must stop.
    public func check(file: String?) throws(DataError) {
        if let reason = stopReason { throw DataError(file: file, message: "load stopped: \(reason)") }
    }

    /// A load nothing stops (tests, `psctl train --local`, which stops with its process).
    public static let never = LoadCancellation()
}
