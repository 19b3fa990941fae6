import PSCore
import PSMath
import PSShard
import PSSpec
import PSTrain
import PSTransport
import PSWire

/// Jobs: submission, the one-at-a-time queue, preparation, the end of a job, and status.
extension Coordinator {
    /// Moves a job on by `event` if its lifecycle allows it, telling observers when its state
    /// changes. A refused event changes nothing and is logged as the bug it would be.
    @discardableResult
    mutating func transition(_ jobId: String, _ event: JobEvent, _ out: inout [CoordinatorAction]) -> Bool {
        guard let job = registry.jobs[jobId] else { return false }
        guard let before = registry.jobs[jobId]!.lifecycle.apply(event) else {
            out.append(.log(.error, "job transition refused", ["job": jobId, "phase": "\(job.lifecycle.phase)",
                                                                "event": "\(event)"]))
            return false
        }
        let state = registry.jobs[jobId]!.state
        if before.state != state { out.append(.observe(.jobState(jobId: jobId, name: job.spec.name, state: state))) }
        return true
    }

    mutating func submit(_ spec: JobSpec, requestId rid: UInt64, connection id: ConnectionID, now: Double,
                         _ out: inout [CoordinatorAction]) {
        let request = Request(connection: id, id: rid)
        // The spec passed psctl's validation, but the server trusts no peer: validate it again.
        do {
            _ = try JobSpec.parse(spec.yamlText(), format: .yaml, source: "submitted spec")
        } catch {
            return reject(request, .invalidSpec, error.message, error.field, false, &out)
        }
        for (field, path) in spec.dataPaths where !path.hasPrefix("/") {
            return reject(request, .invalidSpec, "relative path '\(path)' (psctl resolves paths before submitting; other clients must send absolute ones)", field, false, &out)
        }
        let queued = registry.unfinishedCount
        guard queued <= CoordinatorLimits.queuedJobsMax else {
            return reject(request, .busy, "\(queued) jobs are already queued (limit \(CoordinatorLimits.queuedJobsMax))", "", false, &out)
        }
        let jobId = registry.add(spec)
        out.append(.observe(.jobState(jobId: jobId, name: spec.name, state: .submitted)))
        // Answered once the journal holds it: an acknowledged job survives a crash.
        out.append(.recordSubmission(jobId: jobId, spec: spec, connection: id, requestId: rid))
        out.append(.log(.info, "job submitted", ["job": jobId, "name": spec.name]))
        startNextJob(now: now, &out)
    }

    /// Starts the oldest submitted job when none is running: first its data is prepared by the driver.
    mutating func startNextJob(now: Double, _ out: inout [CoordinatorAction]) {
        guard run == nil, !shuttingDown, let next = registry.nextToStart else { return }
        transition(next, .prepare, &out)
        registry.jobs[next]!.preparingSince = now
        registry.jobs[next]!.slowLoadLogged = false
        out.append(.prepare(jobId: next, spec: registry.jobs[next]!.spec))
    }

    mutating func prepared(_ jobId: String, _ result: Result<PreparedData, PreparationError>, checkpoint: Checkpoint?,
                           now: Double, _ out: inout [CoordinatorAction]) {
        guard let job = registry.jobs[jobId], job.lifecycle.phase == .preparing, !shuttingDown else { return }
        registry.jobs[jobId]!.preparingSince = nil
        switch result {
        case let .failure(error):
            finish(jobId, .failed, message: error.message, &out)
            startNextJob(now: now, &out)
        case let .success(data):
            let spec = job.spec
            let network = spec.network
            let steps = ChunkPlan.stepsPerEpoch(count: data.trainCount, batchSize: spec.training.batchSize)
            run = Run(jobId: jobId, spec: spec, ranges: network.layout.pushRanges, parameterCount: network.parameterCount,
                      appliesInParts: spec.optimizer.clipNorm == nil, data: data, ledger: TrainingLedger(spec: spec),
                      stepsPerEpoch: steps, epochStartedAt: now)
            registry.jobs[jobId]!.stepsPerEpoch = steps
            registry.jobs[jobId]!.epoch = 1
            if job.recovered { run!.resumedAt = now }
            if let checkpoint {
                resume(from: checkpoint, now: now, &out)
            } else {
                out.append(.shard(.open(jobId: jobId, spec: spec)))
                if job.recovered {
                    out.append(.log(.warning, "job starts over from its first step (no usable checkpoint)", ["job": jobId]))
                    out.append(.observe(.jobResumed(jobId: jobId, step: 0)))
                }
            }
            // Workers of another signature do not count: with only those the job waits, never "runs".
            var r = run!
            let eligible = eligibleWorkers(&r, &out)
            run = r
            transition(jobId, .prepared(workers: !eligible.isEmpty), &out)
            out.append(.log(.info, checkpoint == nil ? "job started" : "job resumed",
                            ["job": jobId, "train": "\(data.trainCount)",
                             "validation": "\(data.validationCount)", "test": "\(data.testCount)",
                             "steps_per_epoch": "\(steps)", "parameters": "\(network.parameterCount)"]))
            switch checkpoint?.phase ?? .train {
            case .train:
                run!.clockWaitsForData = checkpoint?.epochElapsedSeconds ?? 0
                openSteps(now: now, &out)
            case .validate: startEvaluation(.validate, count: data.validationCount, &out)
            case .test: startEvaluation(.test, count: data.testCount, &out)
            }
            dispatch(now: now, &out)
        }
    }

    /// Puts the new run where `c` left it (the driver checked that it fits this job and its data) and has
    /// the shard restore its values: the steps after it are redone, with the same bits.
    mutating func resume(from c: Checkpoint, now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run else { return }
        r.version = c.version
        r.epoch = c.epoch
        r.stepInEpoch = c.stepInEpoch
        r.openedInEpoch = c.stepInEpoch
        r.epochStats = ChunkStats(lossSum: c.epochLossSum, correct: c.epochCorrect, samples: c.epochSamples)
        r.trainingSeconds = c.trainingSeconds
        r.trainedSamples = c.trainedSamples
        r.epochSeconds = c.epochSeconds
        r.epochStartedAt = now - c.epochElapsedSeconds
        r.ledger = TrainingLedger(spec: r.spec, restoring: c)
        r.kept = c.phase == .test ? (c.keptEpoch, c.keptVersion) : nil
        if r.spec.training.computeSignature == nil, case let .success(s) = ComputeSignature.parse(c.signature) { r.signature = s }
        r.signaturesUsed = Set(c.signaturesUsed.compactMap { text in
            guard case let .success(s) = ComputeSignature.parse(text) else { return nil }
            return s
        })
        r.lastCheckpointAt = now
        let steps = c.steps(stepsPerEpoch: r.stepsPerEpoch)
        run = r
        var job = registry.jobs[r.jobId]!
        job.epoch = min(c.epoch + 1, r.spec.training.epochs)
        job.step = min(c.stepInEpoch, r.stepsPerEpoch)
        if let last = c.history.last {
            job.trainLoss = last.trainLoss
            job.validationLoss = last.validationLoss
            job.validationAccuracy = last.validationAccuracy
            job.bestEpoch = last.validationLoss == nil ? 0 : last.bestEpoch
        }
        if c.epochSamples > 0 { job.trainLoss = c.epochLossSum / Double(c.epochSamples) }
        job.checkpointSteps = steps
        job.checkpointAt = now
        registry.jobs[r.jobId] = job
        out.append(.shard(.restore(jobId: r.jobId, spec: r.spec, checkpoint: c)))
        out.append(.log(.info, "job resumes from its checkpoint", ["job": r.jobId, "step": "\(steps)",
                                                                   "epoch": "\(c.epoch + 1)", "phase": c.phase.rawValue]))
        out.append(.observe(.jobResumed(jobId: r.jobId, step: steps)))
    }

    /// Whether a checkpoint of `r` is due (and none is being written).
    func isCheckpointDue(_ r: Run, epochEnd: Bool, now: Double) -> Bool {
        guard !r.checkpointInFlight, r.stopping == nil else { return false }
        let c = r.spec.checkpoint
        return (epochEnd && c.atEpochEnd) || (c.everySteps > 0 && r.stepsSinceCheckpoint >= c.everySteps)
            || (c.everySeconds > 0 && now - r.lastCheckpointAt >= c.everySeconds)
    }

    /// Takes a checkpoint of the running job if one is due: at an epoch's end (`epochEnd`) when the spec
    /// asks for that, or once `every_steps` steps or `every_seconds` seconds have passed since the last.
    /// Only between pieces of work (`phase` says which comes next), and one at a time: while one is being
    /// written a due one waits for the next boundary. The shard adds the values and hands it over.
    mutating func checkpointIfDue(_ phase: Checkpoint.Phase, epochEnd: Bool, now: Double, _ out: inout [CoordinatorAction]) {
        // Not after a step that was not finite: the shard's optimizer state is not kept then (a restart
        // redoes the steps from the last checkpoint and stops at the same step).
        guard var r = run, isCheckpointDue(r, epochEnd: epochEnd, now: now) else { return }
        // ssp/async take one only with no batch in flight (their steps are applied out of order).
        guard !r.spec.training.consistency.appliesOnArrival || r.works.allSatisfy({ $0.kind != .train }) else { return }
        let c = r.spec.checkpoint
        let saved = r.ledger.saved
        let checkpoint = Checkpoint(
            jobId: r.jobId, specSHA256: r.specSHA256, version: r.version, phase: phase, epoch: r.epoch,
            stepInEpoch: r.stepInEpoch, epochLossSum: r.epochStats.lossSum, epochCorrect: r.epochStats.correct,
            epochSamples: r.epochStats.samples, trainingSeconds: r.trainingSeconds, trainedSamples: r.trainedSamples,
            epochSeconds: r.epochSeconds, history: r.ledger.history, stopper: saved.stopper, tracker: saved.tracker,
            hasBest: saved.hasBest, bestVersion: saved.bestVersion, keptEpoch: r.kept?.epoch ?? 0,
            keptVersion: r.kept?.version ?? 0, signature: r.signature?.description ?? "",
            signaturesUsed: r.signaturesUsed.map(\.description).sorted())
        var withElapsed = checkpoint
        withElapsed.epochElapsedSeconds = phase == .train && r.stepInEpoch > 0 ? max(now - r.epochStartedAt, 0) : 0
        r.checkpointInFlight = true
        r.stepsSinceCheckpoint = 0
        r.lastCheckpointAt = now
        run = r
        out.append(.shard(.snapshot(withElapsed, keep: c.keep)))
    }

    /// The runtime wrote the running job's checkpoint (`error` nil) or could not (the previous one stays).
    mutating func checkpointEnded(_ jobId: String, steps: Int, error: String?, now: Double) {
        if run?.jobId == jobId { run!.checkpointInFlight = false }
        guard registry.jobs[jobId] != nil else { return }
        if let error {
            registry.jobs[jobId]!.checkpointError = error
        } else {
            registry.jobs[jobId]!.checkpointSteps = steps
            registry.jobs[jobId]!.checkpointAt = now
            registry.jobs[jobId]!.checkpointError = ""
        }
    }

    /// Ends a job by `event` (one its lifecycle allows): records the result, answers waiters, drops
    /// the run if it was this job (and tells the shard to let its values go).
    mutating func finish(_ jobId: String, _ event: JobEvent, message: String, summary: TrainingSummary? = nil,
                         sha: String = "", _ out: inout [CoordinatorAction]) {
        // Its data still loading (not a load that just failed): the load is cancelled.
        let loading = registry.jobs[jobId]?.preparingSince != nil
        guard transition(jobId, event, &out) else { return }
        if loading {
            registry.jobs[jobId]!.preparingSince = nil
            out.append(.cancelPrepare(jobId: jobId, reason: message))
        }
        let state = registry.jobs[jobId]!.state
        let result = JobResult(jobId: jobId, state: state, summary: summary, weightsSHA256: sha, message: message)
        for (connection, rid) in registry.end(jobId, result: result, message: message) {
            out.append(.send(connection, Envelope(requestId: rid, message: .jobResult(result))))
        }
        if let r = run, r.jobId == jobId {
            // A trained job's shard let its values go when it handed them over.
            if r.finishing == nil { out.append(.shard(.close)) }
            run = nil
            membership.forgetWeights()
        }
        out.append(.log(state == .failed ? .error : .info, "job ended",
                        ["job": jobId, "state": state.rawValue, "message": message, "weights_sha256": sha]))
        registry.retainNewestModels()
    }

    /// Training and evaluation are over: the summary waits for the shard's final parameters.
    mutating func complete(test: ChunkStats?, _ out: inout [CoordinatorAction]) {
        guard var r = run, let kept = r.kept else { return }
        r.finishing = r.ledger.summary(keptEpoch: kept.epoch, test: test,
                                       samplesPerSecond: Double(r.trainedSamples) / max(r.trainingSeconds, 1e-9))
        r.finishing!.computeSignatures = r.signaturesUsed.map(\.description).sorted()
        r.finishing!.timingDependent = r.spec.training.consistency.appliesOnArrival
        run = r
        out.append(.shard(.finish))
    }

    /// The shard's final parameters: the model is made, saved, and the job ends.
    mutating func trained(_ jobId: String, parameters: [Float], sha: String, now: Double, _ out: inout [CoordinatorAction]) {
        guard let r = run, r.jobId == jobId, let summary = r.finishing else { return }  // cancelled meanwhile
        let model = TrainedModel(spec: r.spec, preprocessing: r.data.preprocessing, parameters: parameters, summary: summary)
        registry.jobs[jobId]!.model = model
        if let failure = r.failure {
            // Its end is recorded before its model is written (and both before anyone is told): a restart
            // takes a model without a recorded end for a job that completed, which this one did not.
            var ending: [CoordinatorAction] = []
            finish(jobId, .failed, message: failure, summary: summary, sha: sha, &ending)
            let recorded = ending.firstIndex {
                if case let .observe(.jobState(id, _, state)) = $0 { return id == jobId && state.isFinal }
                return false
            }
            ending.insert(.saveModel(jobId: jobId, model: model), at: recorded.map { $0 + 1 } ?? 0)
            out += ending
        } else {
            out.append(.saveModel(jobId: jobId, model: model))
            let note = r.stopping.map { "stopped on a \($0) (training.on_non_finite: stop)" } ?? ""
            finish(jobId, .finished(stoppedEarly: summary.stoppedEarly), message: note, summary: summary, sha: sha, &out)
        }
        startNextJob(now: now, &out)
    }

    /// Whether an ended job's checkpoints stay on disk: a job that failed on a non-finite step keeps
    /// its last good ones (the driver deletes every other ended job's).
    public func keepsCheckpoints(of jobId: String) -> Bool {
        registry.jobs[jobId]?.keepsCheckpoints ?? false
    }

    // MARK: Status

    /// What `psctl status` shows for a job whose data is being prepared.
    static var preparingMessage: String { JobRegistry.preparingMessage }

    mutating func updateStatus(now: Double) {
        guard let r = run else { return }
        var job = registry.jobs[r.jobId]!
        let stepsLeft = (r.spec.training.epochs - r.epoch) * r.stepsPerEpoch - r.stepInEpoch
        if job.samplesPerSecond > 0 {
            job.etaSeconds = Double(stepsLeft * r.spec.training.batchSize) / job.samplesPerSecond
        }
        registry.jobs[r.jobId] = job
    }

    /// A job's status; for the running job, what its signature rule does now (from the run and the
    /// membership, like each worker's `excludedReason`): its signature, the workers it leaves idle,
    /// and, while none matches, what it waits for.
    func status(of jobId: String, now: Double) -> JobStatus {
        var status = registry.status(of: jobId, workers: run?.jobId == jobId ? membership.workers.count : 0, now: now)
        if let r = run, r.jobId == jobId, status.message.isEmpty {
            let unable = r.unable.keys.sorted().compactMap { id in membership.workers[id].map { "\($0.name): \(r.unable[id]!)" } }
            if !unable.isEmpty {
                status.message = "\(unable.count) worker\(unable.count == 1 ? "" : "s") cannot run this job: " + unable.joined(separator: "; ")
            }
        }
        status.stallReason = stallReason(of: jobId, now: now) ?? ""
        guard let r = run, r.jobId == jobId, let signature = r.signature, !r.spec.training.allowMixedSignatures else { return status }
        status.computeSignature = signature.description
        let excluded = membership.workers.values.filter { $0.signature != signature }.count
        status.excludedWorkers = excluded
        if excluded == membership.workers.count, excluded > 0, status.message.isEmpty {
            status.message = "waiting for a worker with compute signature \(signature); "
                + "\(excluded) connected worker\(excluded == 1 ? " has" : "s have") another"
        }
        return status
    }

    public func clusterStatus(now: Double) -> ClusterStatus {
        let held = (run?.works ?? []).flatMap(\.assigned).reduce(into: [UInt64: Int]()) { $0[$1.value, default: 0] += $1.key.count }
        let excluded: (Membership.Worker) -> String = { [run] w in
            if let r = run, let reason = r.unable[w.id] { return "cannot run \(r.jobId): \(reason)" }
            guard let r = run, let signature = r.signature, !r.spec.training.allowMixedSignatures,
                  w.signature != signature else { return "" }
            return Self.mismatch(w.signature, job: r.jobId, signature)
        }
        let list = membership.status(held: held, jobId: run?.jobId ?? "", excluded: excluded,
                                     heartbeatInterval: config.heartbeatIntervalSeconds, now: now)
        return ClusterStatus(serverAddress: config.address, uptimeSeconds: now - startedAt, workers: list,
                             serverComputeSignature: config.computeSignature)
    }
}
