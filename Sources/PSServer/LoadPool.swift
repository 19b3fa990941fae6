import Foundation
import Logging
import PSCore
import PSData

/// Limits of the server's data loads, each with its reason.
public enum LoadLimits {
    /// Loads that run at once. The coordinator prepares one job at a time, so two leave room for the next
    /// job's load while an abandoned one is still winding down.
    public static let concurrentMax = 2
    /// Abandoned loads (their job was cancelled or ran past its deadline) whose thread has not come back:
    /// each pins a thread (a read stuck in the kernel cannot be interrupted), so past this many the server
    /// refuses new loads, saying so, instead of piling up threads. A restart clears them.
    public static let abandonedMax = 16
}

/// Runs job data loads on threads of their own, never on a queue anything else waits on: at most
/// `LoadLimits.concurrentMax` at once, the rest queued in order. A load is given a `LoadCancellation`; the
/// coordinator abandons it (cancelled job, deadline, shutdown) without waiting: the load is told to stop,
/// its slot goes to the next load at once, and whatever it delivers later is ignored by the coordinator.
final class LoadPool: @unchecked Sendable {
    typealias Body = @Sendable (LoadCancellation) -> Void

    private struct Pending {
        let jobId: String
        let cancellation: LoadCancellation
        let body: Body
    }

    private let lock = NSLock()
    private var running: [String: LoadCancellation] = [:]
    /// Abandoned loads whose thread has not returned, by their cancellation: the job each was for.
    private var abandoned: [ObjectIdentifier: String] = [:]
    private var waiting: [Pending] = []
    private let deadlineSeconds: Double?

    /// `deadlineSeconds`: each load's own deadline (its readers stop themselves past it).
    init(deadlineSeconds: Double?) { self.deadlineSeconds = deadlineSeconds }

    /// Starts `body` for `jobId` now or once a slot frees. Returns why it cannot, without running it, when
    /// too many abandoned loads are still stuck.
    func submit(jobId: String, _ body: @escaping Body) -> String? {
        let pending = Pending(jobId: jobId, cancellation: LoadCancellation(seconds: deadlineSeconds), body: body)
        let (refusal, start): (String?, [Pending]) = lock.withLock {
            guard abandoned.count < LoadLimits.abandonedMax else {
                return ("\(abandoned.count) earlier loads are still stuck reading their data (jobs "
                        + "\(abandoned.values.sorted().joined(separator: ", "))); restart ps-server once their files respond", [])
            }
            waiting.append(pending)
            return (nil, takeWaiting())
        }
        for p in start { launch(p) }
        return refusal
    }

    /// Tells `jobId`'s load to stop (running or queued) and frees its slot now; its thread, if stuck, is
    /// counted against `LoadLimits.abandonedMax` until it returns.
    func abandon(_ jobId: String, reason: String) {
        let next: [Pending] = lock.withLock {
            if let i = waiting.firstIndex(where: { $0.jobId == jobId }) {
                waiting[i].cancellation.cancel(reason)
                waiting.remove(at: i)
                return []
            }
            guard let cancellation = running.removeValue(forKey: jobId) else { return [] }
            cancellation.cancel(reason)
            abandoned[ObjectIdentifier(cancellation)] = jobId
            return takeWaiting()
        }
        for p in next { launch(p) }
    }

    /// Abandons every load (the server is stopping); waits for none.
    func abandonAll(reason: String) {
        let jobs = lock.withLock { Array(running.keys) + waiting.map(\.jobId) }
        for jobId in jobs { abandon(jobId, reason: reason) }
    }

    /// Loads running or queued now, and abandoned ones still stuck (for tests and logs).
    var counts: (running: Int, waiting: Int, abandoned: Int) {
        lock.withLock { (running.count, waiting.count, abandoned.count) }
    }

    private func takeWaiting() -> [Pending] {
        var out: [Pending] = []
        while running.count < LoadLimits.concurrentMax, !waiting.isEmpty {
            let p = waiting.removeFirst()
            running[p.jobId] = p.cancellation
            out.append(p)
        }
        return out
    }

    private func launch(_ p: Pending) {
        let thread = Thread { [self] in
            p.body(p.cancellation)
            let next: [Pending] = lock.withLock {
                if abandoned.removeValue(forKey: ObjectIdentifier(p.cancellation)) == nil { running[p.jobId] = nil }
                return takeWaiting()
            }
            for n in next { launch(n) }
        }
        thread.name = "ps-server.load"
        thread.start()
    }
}

/// A test hook, named so in the log line it causes: with `PS_TEST_LOAD_HANG_PATH` set, a load whose data
/// paths contain that text hangs for an hour before reading, deaf to its cancellation, as a read stuck in
/// the kernel would (a hung network filesystem); the end-to-end tests use it to show that such a load
/// delays no other job, no model write and no stop.
enum LoadTestHook {
    static func hangIfAsked(jobId: String, spec: JobSpec, logger: Logger?) {
        guard let text = getenv("PS_TEST_LOAD_HANG_PATH").map({ String(cString: $0) }), !text.isEmpty,
              spec.dataPaths.contains(where: { $0.path.contains(text) }) else { return }
        logger?.warning("test hook PS_TEST_LOAD_HANG_PATH: this load hangs for an hour, ignoring cancellation",
                        metadata: ["job": "\(jobId)"])
        Thread.sleep(forTimeInterval: 3600)
    }
}
