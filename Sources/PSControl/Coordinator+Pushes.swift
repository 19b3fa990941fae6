import PSCore
import PSMath
import PSShard
import PSTrain
import PSTransport
import PSWire

/// Gradient pushes: checked against the schedule (job, step, assignment, samples, statistics), their
/// values forwarded to the shard, complete parts applied there as they complete.
extension Coordinator {
    mutating func push(_ p: PushGradient, from wid: UInt64, requestId rid: UInt64, connection id: ConnectionID,
                       now: Double, _ out: inout [CoordinatorAction]) {
        defer { backupsAfterPush(p, from: wid, now: now, &out) }  // Backup chunks (Coordinator+Backups.swift)
        guard accept(p, from: wid, requestId: rid, connection: id, &out), var r = run else { return }
        if let before = r.clockWaitsForData {
            r.epochStartedAt = now - before
            r.clockWaitsForData = nil
            run = r
        }
        if r.spec.training.consistency.appliesOnArrival {
            applyNextBatch(now: now, &out)
            // The worker that pushed may take another batch now.
            dispatch(now: now, &out)
        } else if r.works.first?.step == p.step {
            // Only the oldest step is applied; later ones wait for it (delayed mode).
            advanceOldestStep(now: now, &out)
        }
    }

    /// Checks and stores one push of an open step; returns whether it stored something new.
    mutating func accept(_ p: PushGradient, from wid: UInt64, requestId rid: UInt64, connection id: ConnectionID,
                         _ out: inout [CoordinatorAction]) -> Bool {
        let request = Request(connection: id, id: rid)
        let range = p.subtree.firstChunk..<(p.subtree.firstChunk + p.subtree.chunkCount)
        guard var r = run, r.jobId == p.jobId else {
            // A late push for a job that ended (cancelled, or finished while this one was in flight).
            if registry.jobs[p.jobId] != nil {
                out.append(.send(id, Envelope(requestId: rid, message: .pushAck(PushAck(jobId: p.jobId, step: p.step, subtree: p.subtree, duplicate: true, offset: p.gradient.offset)))))
                return false
            }
            reject(request, .unknownJob, "push for unknown job '\(p.jobId)'", "job_id", true, &out)
            return false
        }
        guard let index = r.works.firstIndex(where: { $0.kind == .train && $0.step == p.step }) else {
            // Steps before the next one to open that are not open were applied (or dropped with a
            // non-finite step): pushes are idempotent by (job, step, subtree).
            let next = r.epoch * r.stepsPerEpoch + r.openedInEpoch
            if p.step < next {
                out.append(.send(id, Envelope(requestId: rid, message: .pushAck(PushAck(jobId: p.jobId, step: p.step, subtree: p.subtree, duplicate: true, offset: p.gradient.offset)))))
                return false
            }
            reject(request, .unknownStep, "push for step \(p.step) of \(p.jobId), which has not started (next step \(next))", "step", true, &out)
            return false
        }
        var work = r.works[index]
        let covered = p.gradient.offset..<(p.gradient.offset + p.gradient.count)
        guard let pushed = work.gradients.parts(covering: covered) else {
            let parts = work.gradients.ranges.map { "[\($0.lowerBound), \($0.upperBound))" }.joined(separator: " ")
            reject(request, .badRequest, "gradient covers [\(covered.lowerBound), \(covered.upperBound)) of job \(p.jobId)'s \(r.parameterCount) parameters, which is neither the whole vector nor one of its push ranges (\(parts))", "gradient", true, &out)
            return false
        }
        if work.gradients.hasNode(range) || work.gradients.missing(pushed, of: range).isEmpty {
            out.append(.observe(.pushAccepted(bytes: p.gradient.count * MemoryLayout<Float>.size, duplicate: true)))
            out.append(.send(id, Envelope(requestId: rid, message: .pushAck(PushAck(jobId: p.jobId, step: p.step, subtree: p.subtree, duplicate: true, offset: p.gradient.offset)))))
            return false
        }
        // Backup chunks (Coordinator+Backups.swift): of a node's two holders the first to push wins.
        guard settleBackup(of: range, p, from: wid, requestId: rid, connection: id, &work, &out) else { return false }
        guard work.assigned[range] == wid else {
            reject(request, .notAssigned, "push for chunks \(range.lowerBound)..<\(range.upperBound) of step \(p.step), which worker \(wid) was not assigned", "first_chunk", true, &out)
            return false
        }
        let expected = work.leafSamples[range].reduce(0, +)
        guard p.samples == expected, p.correct >= 0, p.correct <= expected else {
            reject(request, .badRequest, "push reports \(p.samples) samples for chunks \(range.lowerBound)..<\(range.upperBound), which hold \(expected)", "samples", true, &out)
            return false
        }
        let stats = ChunkStats(lossSum: p.lossSum, correct: p.correct, samples: p.samples)
        // Bit patterns, not `==`: a diverged job's NaN loss is the same NaN in every push of a node.
        if let earlier = work.gradients.partialStats(of: range),
           earlier.lossSum.bitPattern != stats.lossSum.bitPattern || earlier.correct != stats.correct {
            reject(request, .badRequest, "push for chunks \(range.lowerBound)..<\(range.upperBound) reports loss_sum \(p.lossSum) and correct \(p.correct), but an earlier part of the same chunks reported \(earlier.lossSum) and \(earlier.correct)", "loss_sum", true, &out)
            return false
        }
        precondition(work.gradients.receivedNodes.count < CoordinatorLimits.inFlightPushesMax, "more nodes than chunks")
        // The values go to the shard, part by part; the schedule keeps only what arrived.
        let gradient = p.gradient.data
        let ranges = work.gradients.ranges
        for l in work.gradients.missing(pushed, of: range) {
            let values = gradient.slice((ranges[l].lowerBound - covered.lowerBound)..<(ranges[l].upperBound - covered.lowerBound))
            out.append(.shard(.push(step: work.step, node: range, part: l, gradient: values)))
        }
        let insertion = work.gradients.insert(range, parts: pushed, stats: stats)
        guard case let .stored(_, nodeComplete) = insertion else { preconditionFailure("checked not a duplicate") }
        if nodeComplete { work.assigned[range] = nil }
        // Counted when stored (a part dropped later with its unfinished node still counts: the record
        // may say "mixed" where it need not, never the reverse).
        if let signature = membership.workers[wid]?.signature { r.signaturesUsed.insert(signature) }
        out.append(.send(id, Envelope(requestId: rid, message: .pushAck(PushAck(jobId: p.jobId, step: p.step, subtree: p.subtree, duplicate: false, offset: p.gradient.offset)))))
        out.append(.observe(.pushAccepted(bytes: p.gradient.count * MemoryLayout<Float>.size, duplicate: false)))
        r.works[index] = work
        run = r
        return true
    }

    /// Has the shard apply parts every chunk of the step has pushed, while the step's other parts are
    /// still on their way, and send each updated part to the workers computing the step: the next
    /// step's weights travel while the last pushes are still arriving. Part by part is bitwise the
    /// whole update (`ParameterStore.applyPart`); a clipped step waits for all of its parts instead.
    mutating func applyParts(_ parts: [Int], _ out: inout [CoordinatorAction]) {
        guard var r = run, var work = r.works.first else { return }
        let ranges = work.gradients.ranges
        // Unless these parts end the step (then nothing can be reassigned before it is over), the shard
        // keeps their values of this step's version for workers that join the step late (sendAssignment).
        let endsStep = ranges.indices.allSatisfy { work.gradients.applied[$0] || parts.contains($0) }
        for l in parts { work.gradients.markApplied(l) }
        // Only to workers computing this step (idle ones would only queue megabytes they may never use).
        let receivers = work.participants.filter { membership.workers[$0] != nil }.sorted()
        // Delayed mode needs no copies of parts: the shard keeps the whole version before the step.
        let keepPrevious = !endsStep && r.spec.training.consistency.delay == 0
        out.append(.shard(.applyParts(step: work.step, parts, batchSize: work.batchSize, keepPrevious: keepPrevious,
                                      sendTo: receivers.map { membership.workers[$0]!.connection })))
        let version = r.version + 1
        for wid in receivers {
            var streamed = membership.workers[wid]!.streamed.flatMap { $0.version == version ? $0 : nil } ?? (version: version, parts: [])
            streamed.parts.formUnion(parts)
            membership.workers[wid]!.streamed = streamed
        }
        r.works[0] = work
        run = r
    }
}
