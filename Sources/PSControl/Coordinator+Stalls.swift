import PSCore
import PSTransport
import PSWire

/// Loads that take too long, and jobs that stopped moving: the coordinator notices both on its ticks
/// (it reads no clock), fails a load past its deadline, and says why a stalled job does not move, once
/// in the log and in status until it moves again.
extension Coordinator {
    /// Fails the job being prepared once its load has taken `loadTimeoutSeconds` (the load is cancelled;
    /// the queue moves on), and logs once when it has taken `stallSeconds`.
    mutating func checkLoadDeadline(now: Double, _ out: inout [CoordinatorAction]) {
        for jobId in registry.order {
            guard let job = registry.jobs[jobId], job.lifecycle.phase == .preparing, let since = job.preparingSince else { continue }
            let files = job.spec.dataPaths.map { "\($0.field): \($0.path)" }.joined(separator: ", ")
            if now - since >= config.loadTimeoutSeconds {
                finish(jobId, .failed, message: "loading data took longer than \(seconds(config.loadTimeoutSeconds)) "
                       + "(ps-server --load-timeout); its files: \(files)", &out)
            } else if now - since >= config.stallSeconds, !job.slowLoadLogged {
                registry.jobs[jobId]!.slowLoadLogged = true
                out.append(.log(.warning, "job stalled", ["job": jobId, "reason": stallReason(of: jobId, now: now) ?? "",
                                                          "files": files]))
            }
        }
    }

    /// Logs, once per stall, why the running job has not moved for `stallSeconds` with workers connected.
    mutating func checkStall(now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run else { return }
        if membership.workers.isEmpty {
            // Waiting for workers says itself why nothing moves; the stall clock starts when one connects.
            r.lastProgressAt = now
            run = r
            return
        }
        guard !r.stallLogged, let reason = stallReason(of: r.jobId, now: now) else { return }
        r.stallLogged = true
        run = r
        out.append(.log(.warning, "job stalled", ["job": r.jobId, "reason": reason]))
    }

    /// The running job moved: the stall clock starts again (and a logged stall is said to be over).
    func moved(_ r: inout Run, now: Double, _ out: inout [CoordinatorAction]) {
        if r.stallLogged {
            out.append(.log(.info, "job moving again", ["job": r.jobId, "stalled_seconds": format(now - r.lastProgressAt)]))
        }
        r.lastProgressAt = now
        r.stallLogged = false
    }

    /// Why `jobId` has not moved for `stallSeconds`, or nil when it is not stalled: still loading data, or
    /// (running, with workers connected) which worker holds the chunks it waits for and since when, no
    /// worker of its compute signature, every worker unable to run it, or the final weights not yet handed
    /// over. Computed from the current state, so it follows changes (a worker removed, a new one joining).
    func stallReason(of jobId: String, now: Double) -> String? {
        guard let job = registry.jobs[jobId], !job.state.isFinal else { return nil }
        if job.lifecycle.phase == .preparing, let since = job.preparingSince, now - since >= config.stallSeconds {
            return "still loading data after \(seconds(now - since)) (it fails after \(seconds(config.loadTimeoutSeconds)))"
        }
        guard let r = run, r.jobId == jobId, !membership.workers.isEmpty, now - r.lastProgressAt >= config.stallSeconds
        else { return nil }
        let still = "no progress for \(seconds(now - r.lastProgressAt)): "
        if r.finishing != nil { return still + "waiting for the parameter shard to hand over the final weights" }
        guard let work = r.work else { return still + "no work in progress" }
        let workers = membership.workers.values.sorted { $0.id < $1.id }
        let able = workers.filter { r.unable[$0.id] == nil }
        if able.isEmpty {
            return still + "every connected worker reported it cannot run the job"
        }
        if !r.spec.training.allowMixedSignatures, let signature = r.signature, !able.contains(where: { $0.signature == signature }) {
            return still + "no connected worker has the job's compute signature \(signature) "
                + "(\(able.count) connected worker\(able.count == 1 ? " has" : "s have") another)"
        }
        let what = work.kind == .train ? "step \(work.step + 1)" : "the \(work.kind == .validate ? "validation" : "test") pass"
        guard !work.assigned.isEmpty else { return still + "\(what) has no chunk handed out" }
        // The workers holding its chunks, the longest-waiting first.
        let held = Dictionary(grouping: work.assigned.keys, by: { work.assigned[$0]! })
        let waits = held.map { wid, nodes in
            (wid: wid, nodes: nodes.sorted { $0.lowerBound < $1.lowerBound },
             since: nodes.compactMap { work.assignedAt[$0] }.min() ?? r.lastProgressAt)
        }.sorted { ($0.since, $0.wid) < ($1.since, $1.wid) }
        let parts = waits.map { w -> String in
            let name = membership.workers[w.wid].map { " (\($0.name), last heartbeat \(seconds(now - $0.lastHeartbeat)) ago)" } ?? ""
            let chunks = w.nodes.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound - 1)" }
            return "chunk\(w.nodes.map(\.count).reduce(0, +) == 1 ? "" : "s") \(chunks.joined(separator: ", ")) from worker \(w.wid)"
                + "\(name) since \(seconds(now - w.since)) ago"
        }
        return still + "\(what) waits for " + parts.joined(separator: "; ")
    }
}

/// "12 s" (whole seconds; "0.4 s" below one).
private func seconds(_ x: Double) -> String {
    x < 1 ? String(format: "%.1f s", x) : "\(Int(x.rounded())) s"
}
