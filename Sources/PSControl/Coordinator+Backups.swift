import PSCore
import PSTransport
import PSWire

/// Backup chunks (sync steps, `training.backup_chunks`, on by default). When a worker has finished its
/// part of a step while a node of another worker's is outstanding past a threshold, the idle worker is
/// handed a copy of the slowest such node. Whichever of the two holders pushes the node first wins: its
/// pushes are applied, the other's are acknowledged `duplicate` and dropped. Both compute the same node
/// from the same weights and chunks, and every node is summed in tree order wherever it was computed, so
/// the bits never change; a straggler only stops holding the step up.
public enum BackupLimits {
    /// A copy goes out once a node is older than this many times what it is expected to take (its chunk
    /// count times the measured seconds per chunk): 1.5 lets a node run half again as long as a
    /// healthy worker's before a copy is computed, so ordinary jitter (a busy core, a late packet) costs
    /// nothing, while a worker at a third of its speed (3×) is overtaken: the copy, started at 1.5×, ends
    /// at about 2.5×.
    public static let slowFactor = 1.5
    /// ...and never before this age: steps here take 5–60 ms, and below a few milliseconds the time of a
    /// node is scheduling noise of the machine, not a slow worker.
    public static let minimumSeconds = 0.005
    /// Weight of a new measurement in the seconds-per-chunk average: a quarter follows a change of load
    /// within a few steps, without one odd step moving it far.
    public static let smoothing = 0.25
    /// A worker overtaken step after step keeps at least an eighth of an even share (and one chunk while
    /// a step has as many chunks as workers): enough to notice, by its nodes coming back on time, that
    /// it is fast again, little enough that a stopped worker costs a step no more than a copy of a small node.
    public static let laggingMax = 3
    /// A worker overtaken `laggingMax` steps running sits steps out (no chunks, and no copies: it would
    /// only hold a step up again), except one step in this many, when it gets its smallest share: if it
    /// keeps up then, it earns its share back step by step. 32 steps of a few milliseconds each: a
    /// worker that is fast again is back within about a tenth of a second, and a stopped one costs one
    /// copy's wait in 32 steps (with one in 8, the 2-worker straggler bench ran at 0.74 of its rate
    /// without the straggler; with one in 32, see docs/PERFORMANCE.md).
    public static let probeSteps = 32
}

/// The measured time per chunk of the running job: an exponentially weighted average of, per step, the
/// first node to come back (from its assignment to its last part: the pace of a healthy worker, since
/// the slow ones come back last), divided by its chunk count. Pure.
///
/// Also who lags: a worker whose node a copy overtook gets half the share of chunks next step (a
/// quarter after two such steps, an eighth after three, at most), and a step it keeps up with (its node
/// back without a copy, or ahead of one) gives back one halving. Assignment never changes results.
struct BackupTiming {
    private(set) var secondsPerChunk: Double?
    /// Per worker, how many halvings of its share it carries (0...`BackupLimits.laggingMax`).
    private(set) var lagging: [UInt64: Int] = [:]

    mutating func overtaken(_ wid: UInt64) { lagging[wid] = min(BackupLimits.laggingMax, (lagging[wid] ?? 0) + 1) }
    mutating func keptUp(_ wid: UInt64) {
        guard let k = lagging[wid] else { return }
        lagging[wid] = k > 1 ? k - 1 : nil
    }
    mutating func forget(_ wid: UInt64) { lagging[wid] = nil }
    /// The shares for `Scheduler.assign`: 1/2^k for a worker lagging k steps.
    var shares: [UInt64: Double] { lagging.mapValues { 1 / Double(1 << $0) } }

    /// The shares for training step `step`: as `shares`, except that a worker lagging `laggingMax` steps
    /// gets none unless `step` is a probe step (one in `BackupLimits.probeSteps`).
    func shares(step: Int) -> [UInt64: Double] {
        let probe = step % BackupLimits.probeSteps == 0
        return lagging.mapValues { $0 >= BackupLimits.laggingMax && !probe ? 0 : 1 / Double(1 << $0) }
    }

    /// Whether `wid` sits out training step `step` (see `shares(step:)`).
    func sitsOut(_ wid: UInt64, step: Int) -> Bool { shares(step: step)[wid] == 0 }

    mutating func record(seconds: Double, chunks: Int) {
        let sample = max(seconds, 0) / Double(max(chunks, 1))
        secondsPerChunk = secondsPerChunk.map { $0 + BackupLimits.smoothing * (sample - $0) } ?? sample
    }

    /// The age at which a node of `chunks` chunks gets a copy, or nil before anything was measured.
    func threshold(chunks: Int) -> Double? {
        secondsPerChunk.map { max(BackupLimits.minimumSeconds, BackupLimits.slowFactor * $0 * Double(chunks)) }
    }
}

/// The copies of one step's nodes. Pure data; the coordinator decides with it.
struct Backups {
    /// Copies handed out and not yet settled: node → the (formerly idle) worker computing it too.
    var copies: [Range<Int>: UInt64] = [:]
    /// Settled nodes: node → the holder whose copy lost (its pushes of the node are acknowledged as
    /// duplicates and dropped, whole or part by part, so no part is ever stored twice).
    var losers: [Range<Int>: UInt64] = [:]
    /// Whether the step's first returned node was measured.
    var timed = false
    /// Holders whose node a copy overtook (true), or who kept up (false), not yet told to the run's timing.
    var outcomes: [(worker: UInt64, overtaken: Bool)] = []
    /// Nodes back without a copy involved, their holders counted as keeping up.
    var keptUp: Set<Range<Int>> = []
    /// The one-shot tick asked of the runtime (asked once per time).
    var wakeAt: Double?

    /// The node copies to hand out now: each idle worker one node, slowest first (the most overdue for
    /// its size), among `outstanding` nodes without a copy whose age passed their threshold. Also the
    /// earliest time a node not yet due will be, when some idle worker is left for it. Pure.
    static func choose(idle: [UInt64], outstanding: [(node: Range<Int>, since: Double)], now: Double,
                       threshold: (Int) -> Double) -> (copies: [(worker: UInt64, node: Range<Int>)], nextDue: Double?) {
        guard !idle.isEmpty else { return ([], nil) }
        let timed = outstanding.map { (node: $0.node, due: $0.since + threshold($0.node.count),
                                       overdue: (now - $0.since) / threshold($0.node.count)) }
        let ready = timed.filter { $0.due <= now }
            .sorted { ($0.overdue, $1.node.lowerBound) > ($1.overdue, $0.node.lowerBound) }
        let copies = zip(idle, ready).map { (worker: $0, node: $1.node) }
        let nextDue = copies.count < idle.count ? timed.filter { $0.due > now }.map(\.due).min() : nil
        return (copies, nextDue)
    }
}

extension Coordinator {
    /// Hands idle workers copies of the outstanding nodes past their threshold (see `Backups.choose`),
    /// and asks the runtime for a tick when the next one falls due. Only for sync training steps with
    /// `backup_chunks` on; only nodes no part of which came back (a node is pushed by one holder); only
    /// to workers that may compute the job and hold nothing of the step.
    mutating func issueBackups(now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run, var work = r.work, work.kind == .train, !work.applying, !work.isComplete,
              r.spec.training.backupChunks, r.spec.training.consistency.mode == .sync, r.failure == nil,
              r.backupTiming.secondsPerChunk != nil else { return }
        let busy = Set(work.assigned.values).union(work.backups.copies.values)
        let idle = membership.workers.values.filter { w in
            !busy.contains(w.id) && r.unable[w.id] == nil && !r.backupTiming.sitsOut(w.id, step: work.step)
                && (r.spec.training.allowMixedSignatures || r.signature == nil || w.signature == r.signature)
        }.map(\.id).sorted()
        let outstanding = work.assigned.keys.filter {
            work.backups.copies[$0] == nil && work.gradients.partialStats(of: $0) == nil
        }.sorted { $0.lowerBound < $1.lowerBound }.map { (node: $0, since: work.assignedAt[$0] ?? now) }
        let timing = r.backupTiming
        let (copies, nextDue) = Backups.choose(idle: idle, outstanding: outstanding, now: now) { timing.threshold(chunks: $0)! }
        for (wid, node) in copies {
            work.backups.copies[node] = wid
            work.participants.insert(wid)
            sendAssignment(to: wid, run: r, work: work, nodes: [node], &out)
            let holder = work.assigned[node]!
            out.append(.log(.debug, "backup chunks handed out", [
                "job": r.jobId, "step": "\(work.step + 1)", "chunks": "\(node.lowerBound)..<\(node.upperBound)",
                "holder": "\(holder)", "backup": "\(wid)", "age_seconds": format(now - (work.assignedAt[node] ?? now)),
                "threshold_seconds": format(timing.threshold(chunks: node.count)!)]))
        }
        if let nextDue, work.backups.wakeAt != nextDue {
            work.backups.wakeAt = nextDue
            out.append(.wake(at: nextDue))
        }
        r.works[0] = work
        run = r
    }

    /// Of a node's two holders, the first to push it wins: the copy's holder takes the node over, or the
    /// copy is dropped; the loser's pushes of the node (now or later) are acknowledged as duplicates and
    /// dropped. Returns false when `p` is such a push (the acknowledgement is sent).
    mutating func settleBackup(of node: Range<Int>, _ p: PushGradient, from wid: UInt64, requestId rid: UInt64,
                               connection id: ConnectionID, _ work: inout Work, _ out: inout [CoordinatorAction]) -> Bool {
        if work.backups.losers[node] == wid {
            out.append(.observe(.pushAccepted(bytes: p.gradient.count * MemoryLayout<Float>.size, duplicate: true)))
            out.append(.send(id, Envelope(requestId: rid, message: .pushAck(PushAck(jobId: p.jobId, step: p.step, subtree: p.subtree, duplicate: true, offset: p.gradient.offset)))))
            return false
        }
        guard let copy = work.backups.copies[node], let holder = work.assigned[node], wid == copy || wid == holder else { return true }
        work.backups.copies[node] = nil
        work.backups.losers[node] = wid == copy ? holder : copy
        if wid == copy { work.assigned[node] = copy }
        work.backups.outcomes.append((holder, wid == copy))
        out.append(.observe(.backupChunks(jobId: p.jobId, chunks: node.count, won: wid == copy)))
        out.append(.log(.debug, wid == copy ? "backup chunks won" : "backup chunks lost", [
            "job": p.jobId, "step": "\(p.step + 1)", "chunks": "\(node.lowerBound)..<\(node.upperBound)",
            "winner": "\(wid)", "dropped": "\(work.backups.losers[node]!)"]))
        return true
    }

    /// A worker leaves the step (gone, or unable to run the job): its copies are dropped (the originals
    /// stay), a node it holds with a copy out goes to the copy's holder instead of being freed, and a node
    /// it holds that will be freed forgets its loser (whoever gets it next must be able to push it).
    mutating func releaseBackups(of wid: UInt64, jobId: String, _ work: inout Work, _ out: inout [CoordinatorAction]) {
        for (node, holder) in work.backups.copies where holder == wid { work.backups.copies[node] = nil }
        for (node, holder) in work.assigned where holder == wid {
            if let copy = work.backups.copies.removeValue(forKey: node) {
                work.assigned[node] = copy
                out.append(.observe(.backupChunks(jobId: jobId, chunks: node.count, won: true)))
            } else {
                work.backups.losers[node] = nil
            }
        }
        for (node, loser) in work.backups.losers where loser == wid { work.backups.losers[node] = nil }
    }

    /// After each push: the step's first node back is measured, and a worker that just finished its
    /// part may take a copy of a straggler's node.
    mutating func backupsAfterPush(_ p: PushGradient, from wid: UInt64, now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run, r.jobId == p.jobId, var work = r.work, work.kind == .train, work.step == p.step else { return }
        let node = p.subtree.firstChunk..<(p.subtree.firstChunk + p.subtree.chunkCount)
        if !work.backups.timed, work.gradients.hasNode(node), work.backups.losers[node] == nil, let since = work.assignedAt[node] {
            work.backups.timed = true
            r.backupTiming.record(seconds: now - since, chunks: node.count)
        }
        for (wid, overtaken) in work.backups.outcomes {
            if overtaken { r.backupTiming.overtaken(wid) } else { r.backupTiming.keptUp(wid) }
        }
        work.backups.outcomes = []
        // A node back from its holder with no copy involved: it kept up.
        if work.gradients.hasNode(node), work.backups.losers[node] == nil, work.backups.keptUp.insert(node).inserted {
            r.backupTiming.keptUp(wid)
        }
        r.works[0] = work
        run = r
        issueBackups(now: now, &out)
    }
}
