import PSCore
import PSMath
import PSShard
import PSTrain
import PSTransport
import PSWire

/// The running job's schedule: no tensors, only what was pushed where. The values are the shard's.
struct Run {
    let jobId: String
    let spec: JobSpec
    /// The push ranges (groups of layers) gradients and weights travel in.
    let ranges: [Range<Int>]
    let parameterCount: Int
    /// Without clipping a step is applied part by part as its parts complete.
    let appliesInParts: Bool
    let data: PreparedData
    var ledger: TrainingLedger
    let stepsPerEpoch: Int
    /// Updates the shard has applied (or been told to) so far: the weights' version.
    var version = 0
    var epoch = 0
    var stepInEpoch = 0
    var epochStats = ChunkStats()
    var epochStartedAt: Double
    /// The run's first epoch (fresh or resumed mid-epoch): its clock starts when the first gradient
    /// arrives, since the workers load the job's data first and `train --local`'s rate leaves its load
    /// out too. The value: the epoch's training time before (a resumed checkpoint's), 0 when fresh.
    var clockWaitsForData: Double?
    var trainingSeconds = 0.0
    var trainedSamples = 0
    /// The last epoch's training time (for the ledger's rate).
    var epochSeconds = 0.0
    var kept: (epoch: Int, version: Int)?
    /// The open pieces of work: one evaluation pass, or the training steps in flight in step order
    /// (sync: one; delayed d: up to d + 1, the oldest applied first; ssp/async: the batches handed out,
    /// each applied when complete).
    var works: [Work] = []
    /// The evaluation, or the oldest open training step.
    var work: Work? { works.first }
    /// Training steps of this epoch handed to the schedule so far (applied or open); `stepInEpoch`
    /// counts the applied ones.
    var openedInEpoch = 0
    /// ssp/async: no new batch is handed out until those in flight are applied (a checkpoint is due:
    /// it is taken with none in flight).
    var draining = false
    /// Set once training and evaluation are over: the summary, while the shard hands over the weights.
    var finishing: TrainingSummary?
    /// The signature every worker computing this job must have: the spec's, else the first worker's
    /// when work is first handed out (and again later while no result has been accepted and no worker
    /// with it is left); nil until then, and always when mixed signatures are accepted.
    var signature: ComputeSignature?
    /// Every signature whose results (pushes, evaluations) this job accepted: the result records them.
    var signaturesUsed: Set<ComputeSignature> = []
    /// Workers already told that the job leaves them idle.
    var toldMismatch: Set<UInt64> = []
    /// Workers that reported they cannot run this job, with their reasons: idle for it.
    var unable: [UInt64: String] = [:]
    /// Backup chunks (Coordinator+Backups.swift): the measured time per chunk, and who needed copies.
    var backupTiming = BackupTiming()
    /// SHA-256 of the spec's wire bytes: checkpoints name the spec they were taken of.
    let specSHA256: [UInt8]
    /// Checkpoint triggers: when the last one was taken (the run's start counts), steps since, and
    /// whether one is being written.
    var lastCheckpointAt: Double
    var stepsSinceCheckpoint = 0
    var checkpointInFlight = false
    /// Set when a job read back from the journal starts (after a restart) until its first step is applied.
    var resumedAt: Double?
    /// The step that was not applied because it was not finite, when the job stops there
    /// (`on_non_finite: stop`): the epoch ends early and training stops after it.
    var stopping: NonFiniteStep?
    /// The failure message of a job that failed on a non-finite step, while the shard hands over the
    /// weights it keeps.
    var failure: String?
    /// Whether steps are checked for a non-finite loss here (and gradients and updates by the shard).
    var checksNonFinite: Bool { spec.training.onNonFinite != .continue }
    /// When the job last moved (started, a step applied, an evaluation chunk received); the clock stands
    /// still while no worker is connected (the job then says it waits for workers).
    var lastProgressAt: Double
    /// Whether this stall was already logged (once per stall; cleared when the job moves again).
    var stallLogged = false

    init(jobId: String, spec: JobSpec, ranges: [Range<Int>], parameterCount: Int, appliesInParts: Bool,
         data: PreparedData, ledger: TrainingLedger, stepsPerEpoch: Int, epochStartedAt: Double) {
        self.jobId = jobId
        self.spec = spec
        self.ranges = ranges
        self.parameterCount = parameterCount
        self.appliesInParts = appliesInParts
        self.data = data
        self.ledger = ledger
        self.stepsPerEpoch = stepsPerEpoch
        self.epochStartedAt = epochStartedAt
        lastCheckpointAt = epochStartedAt
        lastProgressAt = epochStartedAt
        specSHA256 = Digest.sha256(spec.wireBytes())
        signature = spec.training.computeSignature.map { text in
            guard case let .success(s) = ComputeSignature.parse(text) else { preconditionFailure("the spec's signature was validated") }
            return s
        }
    }
}

/// One training step or evaluation pass: its chunks, who holds which, what came back.
struct Work {
    let kind: WorkKind
    let step: Int
    let epoch: Int
    /// The weights it is computed on (ssp/async: set again when a lost worker's batch is handed out anew).
    var version: Int
    let batchStart: Int
    let batchSize: Int
    /// Samples per chunk.
    let leafSamples: [Int]
    var gradients: StepProgress
    var evaluations: NodeCollector<Void>
    /// Nodes handed out and not yet received, by worker.
    var assigned: [Range<Int>: UInt64] = [:]
    /// Workers given chunks of this work (the receivers of parts applied early).
    var participants: Set<UInt64> = []
    /// A training step whose every push is in: the shard applies it (or its last parts) and says when
    /// it has (`.shardStepApplied`), or that it did not because it was not finite.
    var applying = false
    /// When each node in `assigned` was handed out (for a stalled job's reason).
    var assignedAt: [Range<Int>: Double] = [:]
    /// Backup chunks (Coordinator+Backups.swift): copies of outstanding nodes given to idle workers.
    var backups = Backups()

    var total: Int { leafSamples.count }
    var isComplete: Bool { kind == .train ? gradients.isComplete : evaluations.isComplete }
    var receivedRanges: [Range<Int>] {
        kind == .train ? gradients.receivedNodes : Array(evaluations.nodes.keys)
    }
}

extension Coordinator {
    /// Opens the training steps the mode allows now (ssp/async: none here; `dispatch` hands out batches
    /// per worker). sync: the next step once the last is applied. delayed d: steps up to d ahead of the
    /// oldest unapplied one, each computed on version max(0, t − d), which the shard holds already.
    /// Steps never run past the epoch's end: the pipeline drains before validation.
    mutating func openSteps(now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run, r.works.allSatisfy({ $0.kind == .train }), r.finishing == nil, r.stopping == nil else { return }
        let consistency = r.spec.training.consistency
        guard !consistency.appliesOnArrival else { return }
        let delay = consistency.delay
        while r.openedInEpoch < r.stepsPerEpoch, r.works.count <= delay {
            let step = r.epoch * r.stepsPerEpoch + r.openedInEpoch
            let version = max(0, step - delay)
            guard version <= r.version else { break }
            openStep(&r, version: version, now: now, &out)
        }
        run = r
    }

    /// Adds the epoch's next batch as a training step computed on `version`, and tells the shard.
    func openStep(_ r: inout Run, version: Int, now: Double, _ out: inout [CoordinatorAction]) {
        let batchSize = r.spec.training.batchSize
        let batchStart = r.openedInEpoch * batchSize
        let batchCount = min(batchSize, r.data.trainCount - batchStart)
        let leaves = ChunkPlan.ranges(batchSize: batchCount, chunks: r.spec.training.chunks).map(\.count)
        if r.openedInEpoch == 0 { r.epochStartedAt = now }
        let step = r.epoch * r.stepsPerEpoch + r.openedInEpoch
        r.works.append(Work(kind: .train, step: step, epoch: r.epoch, version: version, batchStart: batchStart,
                            batchSize: batchCount, leafSamples: leaves,
                            gradients: StepProgress(leaves: leaves.count, ranges: r.ranges), evaluations: NodeCollector(total: 1)))
        r.openedInEpoch += 1
        out.append(.shard(.beginStep(step: step, leaves: leaves.count)))
    }

    mutating func startEvaluation(_ kind: WorkKind, count: Int, _ out: inout [CoordinatorAction]) {
        guard var r = run else { return }
        out.append(.log(.info, kind == .validate ? "validation started" : "test evaluation started",
                        ["job": r.jobId, "epoch": "\(r.epoch + 1)", "samples": "\(count)"]))
        let leaves = ChunkPlan.evaluationRanges(count: count).map(\.count)
        r.works = [Work(kind: kind, step: r.epoch * r.stepsPerEpoch + r.stepInEpoch, epoch: r.epoch,
                        version: r.version, batchStart: 0, batchSize: count, leafSamples: leaves,
                        gradients: StepProgress(leaves: 1, ranges: r.ranges),
                        evaluations: NodeCollector(total: leaves.count))]
        run = r
    }

    /// Hands out every chunk of the open work that is neither received nor held by a live worker.
    /// Fresh work is split evenly over the workers in id order; chunks freed by a lost worker are
    /// split the same way over the workers holding the least. Assignment never changes results.
    /// ssp/async training: each worker gets whole batches instead (`dispatchBatches`).
    mutating func dispatch(now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run, r.finishing == nil else { return }
        let batches = r.spec.training.consistency.appliesOnArrival && r.works.allSatisfy { $0.kind == .train }
            && r.stopping == nil && r.failure == nil
        guard !r.works.isEmpty || (batches && r.openedInEpoch < r.stepsPerEpoch) else { return }
        let eligible = eligibleWorkers(&r, &out)
        run = r
        if eligible.isEmpty {
            transition(r.jobId, .workersGone, &out)
            return
        }
        transition(r.jobId, .workersAvailable, &out)
        if batches { return dispatchBatches(to: eligible, now: now, &out) }
        for i in r.works.indices {
            var work = run!.works[i]
            var taken = [Bool](repeating: false, count: work.total)
            for range in Array(work.assigned.keys) + work.receivedRanges { for c in range { taken[c] = true } }
            let free = (0..<work.total).filter { !taken[$0] }
            let held = Dictionary(grouping: work.assigned.values, by: { $0 }).mapValues { $0.count }
            // Backup chunks (Coordinator+Backups.swift): a worker copies overtook gets a smaller share.
            for (wid, nodes) in Scheduler.assign(free: free, total: work.total, workers: eligible, held: held,
                                                 shares: run!.backupTiming.shares(step: work.step)) {
                for n in nodes {
                    work.assigned[n] = wid
                    work.assignedAt[n] = now
                }
                work.participants.insert(wid)
                sendAssignment(to: wid, run: run!, work: work, nodes: nodes, &out)
            }
            run!.works[i] = work
        }
        issueBackups(now: now, &out)  // Backup chunks (Coordinator+Backups.swift)
    }

    /// ssp/async: every worker holds up to `ConsistencyLimits.batchesPerWorkerMax` whole batches, each
    /// computed on the newest weights when handed out: first a batch a lost worker left, then the
    /// epoch's next one, as long as no batch in flight could be applied more than the bound's versions
    /// after the weights it was computed on (each batch in flight adds at most one version before it).
    mutating func dispatchBatches(to eligible: [UInt64], now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run else { return }
        let bound = r.spec.training.consistency.stalenessBound
        // The shard carries out commands in order: after a batch it is applying, it holds the next version.
        let newest = r.version + (r.works.contains(where: \.applying) ? 1 : 0)
        for _ in 0..<ConsistencyLimits.batchesPerWorkerMax {
            // One batch per worker per round, so each starts computing before any takes a second.
            for wid in eligible {
                let holding = r.works.filter { $0.assigned.values.contains(wid) }.count
                guard holding < ConsistencyLimits.batchesPerWorkerMax else { continue }
                let index: Int
                if let i = r.works.firstIndex(where: { $0.assigned.isEmpty && !$0.isComplete && !$0.applying }) {
                    r.works[i].version = newest
                    index = i
                } else {
                    guard !r.draining, r.openedInEpoch < r.stepsPerEpoch else { break }
                    let oldest = r.works.map(\.version).min() ?? newest
                    guard r.version + r.works.count - oldest <= bound else { break }
                    openStep(&r, version: newest, now: now, &out)
                    index = r.works.count - 1
                }
                let nodes = ReductionTree.cover(first: 0, count: r.works[index].total, total: r.works[index].total)
                for n in nodes {
                    r.works[index].assigned[n] = wid
                    r.works[index].assignedAt[n] = now
                }
                r.works[index].participants.insert(wid)
                run = r
                sendAssignment(to: wid, run: r, work: r.works[index], nodes: nodes, &out)
                r = run!
            }
        }
        run = r
    }

    /// The workers that may compute the running job: all of them when the spec accepts mixed
    /// signatures, otherwise those whose signature equals the job's (fixed here from the first worker
    /// when the spec names none). A worker left out is told why once, stays connected and idle, and
    /// status shows it; with no eligible worker the job waits, saying for which signature.
    mutating func eligibleWorkers(_ r: inout Run, _ out: inout [CoordinatorAction]) -> [UInt64] {
        let workers = membership.workers.values.sorted { $0.id < $1.id }.filter { r.unable[$0.id] == nil }
        if r.spec.training.allowMixedSignatures { return workers.map(\.id) }
        // The first worker's signature binds the job once a result computed with it was accepted; until
        // then, if no worker with it is left, the job takes the signature of the first worker now.
        let unbound = r.spec.training.computeSignature == nil && r.signaturesUsed.isEmpty
            && !workers.contains { $0.signature == r.signature }
        if r.signature == nil || unbound, let first = workers.first, first.signature != r.signature {
            r.signature = first.signature
            r.toldMismatch = []
            out.append(.log(.info, "job computes only on workers with the first worker's compute signature",
                            ["job": r.jobId, "worker": "\(first.id)", "compute_signature": "\(first.signature)"]))
        }
        guard let signature = r.signature else { return [] }
        var eligible: [UInt64] = []
        for w in workers {
            if w.signature == signature {
                eligible.append(w.id)
            } else if !r.toldMismatch.contains(w.id) {
                r.toldMismatch.insert(w.id)
                let reason = Self.mismatch(w.signature, job: r.jobId, signature)
                out.append(.send(w.connection, Envelope(requestId: 0, message: .error(ErrorReply(code: .signatureMismatch, message: reason)))))
                out.append(.log(.warning, "worker left idle: its compute signature differs from the job's",
                                ["job": r.jobId, "worker": "\(w.id)", "name": w.name,
                                 "worker_signature": "\(w.signature)", "job_signature": "\(signature)"]))
            }
        }
        return eligible
    }

    /// What a worker left idle is told, and what status shows beside it.
    static func mismatch(_ worker: ComputeSignature, job: String, _ signature: ComputeSignature) -> String {
        "\(job) computes bitwise only on workers with compute signature \(signature); this worker has \(worker) "
            + "(see README, 'Exact on every CPU'); it waits for a job it matches, or one with allow_mixed_signatures: true"
    }

    /// The job's spec (first time), the weights of the work's version unless the worker holds them
    /// (the shard sends them, ahead of the assignment), then the assignment.
    mutating func sendAssignment(to wid: UInt64, run r: Run, work: Work, nodes: [Range<Int>], _ out: inout [CoordinatorAction]) {
        guard var w = membership.workers[wid] else { return }
        if !w.startedJobs.contains(r.jobId) {
            out.append(.send(w.connection, Envelope(requestId: 0, message: .startJob(StartJob(jobId: r.jobId, spec: r.spec)))))
            w.startedJobs.insert(r.jobId)
        }
        if w.version != work.version {
            let appliedThisStep = work.kind == .train && work.gradients.applied.contains(true)
            if let streamed = w.streamed, streamed.version == work.version, !appliedThisStep {
                // Some parts went out as they were applied; send the rest (none unless it joined mid-step).
                let rest = r.ranges.indices.filter { !streamed.parts.contains($0) }
                if !rest.isEmpty { out.append(.shard(.sendWeights(version: work.version, parts: rest, to: w.connection))) }
            } else if appliedThisStep {
                // Chunks reassigned mid-step: the parts already applied hold the next version in the
                // shard, which sends their values of this version from what it kept before the update.
                out.append(.shard(.sendWeights(version: work.version, parts: Array(r.ranges.indices), to: w.connection)))
            } else {
                out.append(.shard(.sendWeights(version: work.version, parts: nil, to: w.connection)))
            }
            w.version = work.version
            w.streamed = nil
        }
        membership.workers[wid] = w
        let assignment = Assignment(jobId: r.jobId, kind: work.kind, step: work.step, epoch: work.epoch,
                                    version: work.version, batchStart: work.batchStart, batchSize: work.batchSize,
                                    subtrees: nodes.map { ChunkRange(firstChunk: $0.lowerBound, chunkCount: $0.count) })
        out.append(.send(w.connection, Envelope(requestId: 0, message: .assignment(assignment))))
    }

    /// The oldest open training step (sync, delayed) moves as far as its pushes allow: a non-finite loss
    /// stops it before any of it is applied; complete parts are applied (without clipping); once every
    /// push is in, the shard finishes it. Later steps wait: the shard applies steps in order.
    mutating func advanceOldestStep(now: Double, _ out: inout [CoordinatorAction]) {
        guard let r = run, let work = r.works.first, work.kind == .train, !work.applying,
              !r.spec.training.consistency.appliesOnArrival else { return }
        let ready = work.gradients.ranges.indices.filter { !work.gradients.applied[$0] && work.gradients.parts[$0].isComplete }
        // Once a part is complete (or the whole step) every chunk has reported its loss.
        if r.checksNonFinite, !ready.isEmpty || work.gradients.isComplete, !work.gradients.reportedLossesFinite {
            return nonFinite(.loss, step: work.step, now: now, &out)
        }
        if r.appliesInParts, !ready.isEmpty { applyParts(ready, &out) }
        if run?.works.first?.gradients.isComplete == true { stepPushed(&out) }
    }

    /// ssp/async: the shard applies one complete batch at a time, whichever completed first.
    mutating func applyNextBatch(now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run, r.spec.training.consistency.appliesOnArrival, !r.works.contains(where: \.applying),
              let i = r.works.firstIndex(where: { $0.kind == .train && $0.gradients.isComplete }) else { return }
        if r.checksNonFinite, !r.works[i].gradients.reportedLossesFinite {
            return nonFinite(.loss, step: r.works[i].step, now: now, &out)
        }
        r.works[i].applying = true
        out.append(.shard(.applyStep(step: r.works[i].step, batchSize: r.works[i].batchSize)))
        run = r
    }

    /// Every push of the oldest training step is in: the shard applies what is left of it (a clipped
    /// step whole; a step applied in parts has had its last part sent already) and answers `stepApplied`.
    mutating func stepPushed(_ out: inout [CoordinatorAction]) {
        guard var r = run, var work = r.works.first, work.kind == .train, !work.applying else { return }
        work.applying = true
        if r.appliesInParts {
            // The shard ends the step when its last part is applied.
            precondition(work.gradients.applied.allSatisfy { $0 }, "step complete with a part not applied")
        } else {
            // Clipping needs the whole gradient's norm: the shard puts the parts' sums together, then applies.
            out.append(.shard(.applyStep(step: work.step, batchSize: work.batchSize)))
        }
        r.works[0] = work
        run = r
    }

    /// The shard's answer to a step's last part or whole step: applied (the job goes on), or not,
    /// because its gradient or update was not finite (`version` is then the last good one).
    mutating func stepApplied(_ jobId: String, step: Int, version: Int, problem: NonFiniteStep.Value?, now: Double,
                              _ out: inout [CoordinatorAction]) {
        guard let r = run, r.jobId == jobId, let work = r.works.first(where: { $0.kind == .train && $0.step == step }) else { return }
        if let problem {
            guard version == r.version else { return }
            return nonFinite(problem, step: step, now: now, &out)
        }
        guard work.applying, version == r.version + 1 else { return }
        completeTrainStep(step, now: now, &out)
    }

    /// A step that was not applied because its loss (checked here before any part is applied) or its
    /// gradient or update (checked by the shard, which undid it) was not finite: the weights are the
    /// last good version, and the steps after it are dropped. `fail`: the job fails, its model is the
    /// weights the ledger keeps and its checkpoints stay. `stop`: the epoch ends here and training
    /// stops, as early stopping would.
    mutating func nonFinite(_ value: NonFiniteStep.Value, step failed: Int, now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run, r.works.contains(where: { $0.kind == .train && $0.step == failed }), r.failure == nil else { return }
        let work = r.works.first { $0.step == failed }!
        let step = NonFiniteStep(value, step: work.step + 1, epoch: work.epoch + 1)
        r.works = []
        let elapsed = max(now - r.epochStartedAt, 1e-9)
        out.append(.log(.warning, "step not applied: \(step)", ["job": r.jobId, "step": "\(step.step)", "epoch": "\(step.epoch)",
                                                              "on_non_finite": r.spec.training.onNonFinite.rawValue]))
        if r.spec.training.onNonFinite == .stop {
            r.stopping = step
            r.trainingSeconds += elapsed
            r.epochSeconds = elapsed
            r.trainedSamples += r.epochStats.samples
            run = r
            if r.data.validationCount > 0 {
                startEvaluation(.validate, count: r.data.validationCount, &out)
                dispatch(now: now, &out)
            } else {
                endEpoch(validation: nil, now: now, &out)
            }
            return
        }
        let kept = r.ledger.keptAfterFailure(currentVersion: r.version)
        if kept.epoch != nil { out.append(.shard(.restoreBest)) }
        r.finishing = r.ledger.failureSummary(partial: r.epochStats, keptEpoch: kept.epoch,
                                              samplesPerSecond: Double(r.trainedSamples + r.epochStats.samples) / (r.trainingSeconds + elapsed))
        r.finishing!.computeSignatures = r.signaturesUsed.map(\.description).sorted()
        r.finishing!.timingDependent = r.spec.training.consistency.appliesOnArrival
        let weights = kept.epoch.map { "best epoch's weights (epoch \($0))" } ?? "last good weights (step \(step.step - 1))"
        let checkpoint = registry.jobs[r.jobId]!.checkpointSteps.map { "; its checkpoint at step \($0) is kept" } ?? ""
        r.failure = "\(step); the \(weights) are the job's model (psctl model pull \(r.jobId))\(checkpoint)"
        registry.jobs[r.jobId]!.keepsCheckpoints = true
        run = r
        out.append(.shard(.finish))
    }

    /// The shard applied training step `step`: the schedule moves on.
    mutating func completeTrainStep(_ step: Int, now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run, let index = r.works.firstIndex(where: { $0.kind == .train && $0.step == step }) else { return }
        let work = r.works.remove(at: index)
        if r.spec.training.consistency.appliesOnArrival {
            // Versions applied between the weights it was computed on and those it was applied to.
            let staleness = r.version - work.version
            registry.jobs[r.jobId]!.countStaleness(staleness)
            out.append(.observe(.pushStaleness(jobId: r.jobId, staleness: staleness)))
        }
        r.version += 1
        moved(&r, now: now, &out)
        let stats = work.gradients.stats
        r.epochStats = r.epochStats + stats
        r.stepInEpoch += 1
        r.stepsSinceCheckpoint += 1
        if let resumed = r.resumedAt {
            // For operators and `make bench`: how long the restart cost until training moved again.
            out.append(.log(.info, "first step applied since the restart", [
                "job": r.jobId, "step": "\(work.step + 1)", "seconds_since_start": format(now - startedAt),
                "seconds_since_resume": format(now - resumed)]))
            r.resumedAt = nil
        }
        let elapsed = max(now - r.epochStartedAt, 1e-9)
        registry.jobs[r.jobId]!.step = r.stepInEpoch
        registry.jobs[r.jobId]!.trainLoss = r.epochStats.lossSum / Double(max(r.epochStats.samples, 1))
        registry.jobs[r.jobId]!.samplesPerSecond = Double(r.epochStats.samples) / elapsed
        out.append(.observe(.stepCompleted(jobId: r.jobId, step: work.step, epoch: r.epoch,
                                           batchLoss: stats.lossSum / Double(max(stats.samples, 1)), batchSize: work.batchSize,
                                           learningRate: r.spec.optimizer.learningRate,
                                           samplesPerSecond: registry.jobs[r.jobId]!.samplesPerSecond)))
        run = r
        if r.stepInEpoch < r.stepsPerEpoch {
            if r.spec.training.consistency.appliesOnArrival {
                // A checkpoint is taken with no batch in flight: when one is due, the batches drain first.
                if isCheckpointDue(r, epochEnd: false, now: now) {
                    if r.works.isEmpty {
                        run!.draining = false
                        checkpointIfDue(.train, epochEnd: false, now: now, &out)
                    } else {
                        run!.draining = true
                    }
                }
                applyNextBatch(now: now, &out)
            } else {
                checkpointIfDue(.train, epochEnd: false, now: now, &out)
                openSteps(now: now, &out)
                // Assignments first: a new step names the version whose parts just went out as they were
                // applied, and only then do the next step's parts (the version after) start to stream.
                dispatch(now: now, &out)
                advanceOldestStep(now: now, &out)
                return
            }
        } else {
            run!.draining = false
            run!.trainingSeconds += elapsed
            run!.epochSeconds = elapsed
            run!.trainedSamples += r.epochStats.samples
            if r.data.validationCount > 0 {
                checkpointIfDue(.validate, epochEnd: false, now: now, &out)
                startEvaluation(.validate, count: r.data.validationCount, &out)
            } else {
                endEpoch(validation: nil, now: now, &out)
                return
            }
        }
        dispatch(now: now, &out)
    }

    mutating func evaluation(_ e: EvalResult, from wid: UInt64, requestId rid: UInt64, connection id: ConnectionID,
                             now: Double, _ out: inout [CoordinatorAction]) {
        let request = Request(connection: id, id: rid)
        let range = e.subtree.firstChunk..<(e.subtree.firstChunk + e.subtree.chunkCount)
        guard var r = run, r.jobId == e.jobId else {
            if registry.jobs[e.jobId] != nil { return }  // late result for an ended job
            return reject(request, .unknownJob, "evaluation result for unknown job '\(e.jobId)'", "job_id", true, &out)
        }
        guard var work = r.work, work.kind == e.kind, e.epoch == work.epoch else { return }  // stale
        if work.evaluations.contains(range) { return }
        guard work.assigned[range] == wid else {
            return reject(request, .notAssigned, "evaluation result for chunks \(range.lowerBound)..<\(range.upperBound), which worker \(wid) was not assigned", "first_chunk", true, &out)
        }
        let expected = work.leafSamples[range].reduce(0, +)
        guard e.samples == expected, e.correct >= 0, e.correct <= expected else {
            return reject(request, .badRequest, "evaluation result reports \(e.samples) samples for chunks holding \(expected)", "samples", true, &out)
        }
        work.assigned[range] = nil
        work.evaluations.insert(range, payload: (), stats: ChunkStats(lossSum: e.lossSum, correct: e.correct, samples: e.samples))
        if let signature = membership.workers[wid]?.signature { r.signaturesUsed.insert(signature) }
        moved(&r, now: now, &out)
        r.works[0] = work
        run = r
        guard work.evaluations.isComplete else { return }
        let stats = work.evaluations.combine { _, _ in () }.stats
        run!.works = []
        if work.kind == .validate {
            endEpoch(validation: stats, now: now, &out)
        } else {
            complete(test: stats, &out)
        }
    }

    mutating func endEpoch(validation: ChunkStats?, now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run else { return }
        // The ledger decides; the shard keeps the best weights (`parameters: []` here: none travel).
        let report = r.ledger.endEpoch(r.epoch + 1, train: r.epochStats, validation: validation, seconds: r.epochSeconds,
                                       parameters: [], version: r.version, stop: r.stopping != nil)
        if r.ledger.keepsWeights(of: report) { out.append(.shard(.keepBest)) }
        var job = registry.jobs[r.jobId]!
        job.trainLoss = report.trainLoss
        job.validationLoss = report.validationLoss
        job.validationAccuracy = report.validationAccuracy
        job.bestEpoch = validation == nil ? 0 : report.bestEpoch
        registry.jobs[r.jobId] = job
        var fields = ["job": r.jobId, "epoch": "\(report.epoch)", "train_loss": format(report.trainLoss),
                      "samples_per_second": format(report.samplesPerSecond)]
        if let v = report.validationLoss { fields["val_loss"] = format(v) }
        if let a = report.validationAccuracy { fields["val_accuracy"] = format(a) }
        out.append(.log(.info, report.stopEarly ? "epoch done, stopping early" : "epoch done", fields))
        out.append(.observe(.epochCompleted(jobId: r.jobId, report: report, learningRate: r.spec.optimizer.learningRate)))
        if r.ledger.finished {
            let kept = r.ledger.keptVersion(currentVersion: r.version)
            if kept.version != r.version {
                out.append(.shard(.restoreBest))
                r.version = kept.version
            }
            r.kept = (kept.epoch, kept.version)
            run = r
            if r.data.testCount > 0 {
                checkpointIfDue(.test, epochEnd: true, now: now, &out)
                startEvaluation(.test, count: r.data.testCount, &out)
                dispatch(now: now, &out)
            } else {
                complete(test: nil, &out)
            }
            return
        }
        r.epoch += 1
        r.stepInEpoch = 0
        r.openedInEpoch = 0
        r.epochStats = ChunkStats()
        run = r
        registry.jobs[r.jobId]!.epoch = r.epoch + 1
        registry.jobs[r.jobId]!.step = 0
        checkpointIfDue(.train, epochEnd: true, now: now, &out)
        openSteps(now: now, &out)
        dispatch(now: now, &out)
    }

    // MARK: Membership

    mutating func removeWorker(_ wid: UInt64, reason: String, now: Double, _ out: inout [CoordinatorAction]) {
        guard let w = membership.remove(wid) else { return }
        let freed = releaseChunks(of: wid, &out)
        out.append(.log(.warning, "worker left", ["worker": "\(wid)", "name": w.name, "reason": reason,
                                                  "chunks_reassigned": "\(freed)"]))
        out.append(.observe(.workerLeft(workerId: wid, reason: reason)))
        dispatch(now: now, &out)
    }

    /// Takes back the chunks `wid` holds of the open work (to be handed to others); returns how many.
    mutating func releaseChunks(of wid: UInt64, _ out: inout [CoordinatorAction]) -> Int {
        guard var r = run else { return 0 }
        // Backup chunks (Coordinator+Backups.swift): copies of its nodes go, and a node it holds with a copy out
        // goes to the copy's holder.
        if let first = r.works.first, first.kind == .train { releaseBackups(of: wid, jobId: r.jobId, &r.works[0], &out) }
        var freed = 0
        for i in r.works.indices {
            for (range, owner) in r.works[i].assigned where owner == wid {
                r.works[i].assigned[range] = nil
                // Parts it pushed of a node it did not finish go too: its chunks may be reassigned as
                // other nodes, which would overlap them. (Parts already applied stay applied.)
                if r.works[i].gradients.partialStats(of: range) != nil {
                    r.works[i].gradients.dropPartial(range)
                    out.append(.shard(.drop(step: r.works[i].step, node: range)))
                }
                freed += range.count
            }
        }
        run = r
        return freed
    }

    /// A worker reported it cannot run the job (its data is outside the worker's data roots, not a
    /// regular file, or unreadable): it stays connected and idle for this job, its chunks go to the
    /// others, and when no connected worker can run the job, the job fails naming each worker and why.
    mutating func workerCannotRun(_ wid: UInt64, jobId: String, reason: String, now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run, r.jobId == jobId, let w = membership.workers[wid], r.unable[wid] == nil else { return }
        r.unable[wid] = reason
        run = r
        let freed = releaseChunks(of: wid, &out)
        out.append(.log(.warning, "worker cannot run the job", ["job": jobId, "worker": "\(wid)", "name": w.name,
                                                                 "reason": reason, "chunks_reassigned": "\(freed)"]))
        let workers = membership.workers.values
        let able = workers.filter { r.unable[$0.id] == nil && (r.signature == nil || r.spec.training.allowMixedSignatures || $0.signature == r.signature) }
        if able.isEmpty {
            let reasons = r.unable.keys.sorted().compactMap { id in membership.workers[id].map { "\($0.name): \(r.unable[id]!)" } }
            finish(jobId, .failed, message: "no worker can run the job: " + reasons.joined(separator: "; "), &out)
            startNextJob(now: now, &out)
            return
        }
        dispatch(now: now, &out)
    }
}
