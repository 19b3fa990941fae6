// Cluster and job status, job lists and job results ⇄ ps.v1 (what `psctl` reads from the coordinator).
// Decoding checks every count, state and rate; losses are not checked, since a diverging job's NaN
// loss is exactly what its status must be able to show.
import PSWireC

extension WorkerStatus {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__WorkerStatus> {
        let m: UnsafeMutablePointer<Ps__V1__WorkerStatus> = arena.message(ps__v1__worker_status__init)
        m.pointee.worker_id = workerId
        m.pointee.name = arena.string(name)
        m.pointee.address = arena.string(address)
        m.pointee.state = workerStateTable.c(state)
        m.pointee.threads = uint32(threads, "WorkerStatus.threads")
        m.pointee.last_heartbeat_age_seconds = lastHeartbeatAgeSeconds
        m.pointee.samples_per_second = samplesPerSecond
        m.pointee.job_id = arena.string(jobId)
        m.pointee.steps_done = uint64(stepsDone, "WorkerStatus.stepsDone")
        m.pointee.chunks_held = uint32(chunksHeld, "WorkerStatus.chunksHeld")
        m.pointee.compute_signature = arena.string(computeSignature)
        m.pointee.excluded_reason = arena.string(excludedReason)
        return m
    }

    init(c: Ps__V1__WorkerStatus, _ path: String) throws(WireError) {
        self.init(workerId: c.worker_id,
                  name: string(c.name),
                  address: string(c.address),
                  state: try workerStateTable.swift(c.state, "\(path).state"),
                  threads: try int(c.threads, "\(path).threads"),
                  lastHeartbeatAgeSeconds: try nonNegative(c.last_heartbeat_age_seconds,
                                                           "\(path).last_heartbeat_age_seconds"),
                  samplesPerSecond: try nonNegative(c.samples_per_second, "\(path).samples_per_second"),
                  jobId: string(c.job_id),
                  stepsDone: try int(c.steps_done, "\(path).steps_done"),
                  chunksHeld: try int(c.chunks_held, "\(path).chunks_held"),
                  computeSignature: string(c.compute_signature),
                  excludedReason: string(c.excluded_reason))
    }
}

extension ClusterStatus {
    /// `servers` (parameter-server shards) stays empty: this build has one coordinator holding every key.
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__ClusterStatus> {
        let m: UnsafeMutablePointer<Ps__V1__ClusterStatus> = arena.message(ps__v1__cluster_status__init)
        m.pointee.server_address = arena.string(serverAddress)
        m.pointee.uptime_seconds = uptimeSeconds
        m.pointee.n_workers = workers.count
        m.pointee.workers = repeatedMessages(arena, workers.map { $0.cMessage(arena) })
        m.pointee.server_compute_signature = arena.string(serverComputeSignature)
        return m
    }

    init(c: Ps__V1__ClusterStatus, _ path: String) throws(WireError) {
        self.init(serverAddress: string(c.server_address),
                  uptimeSeconds: try nonNegative(c.uptime_seconds, "\(path).uptime_seconds"),
                  workers: try repeated(c.workers, c.n_workers, "\(path).workers", WorkerStatus.init(c:_:)),
                  serverComputeSignature: string(c.server_compute_signature))
    }
}

extension JobStatus {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__JobStatus> {
        let m: UnsafeMutablePointer<Ps__V1__JobStatus> = arena.message(ps__v1__job_status__init)
        m.pointee.job_id = arena.string(jobId)
        m.pointee.name = arena.string(name)
        m.pointee.state = jobStateTable.c(state)
        m.pointee.epoch = uint64(epoch, "JobStatus.epoch")
        m.pointee.epochs = uint64(epochs, "JobStatus.epochs")
        m.pointee.step = uint64(step, "JobStatus.step")
        m.pointee.steps_per_epoch = uint64(stepsPerEpoch, "JobStatus.stepsPerEpoch")
        if let trainLoss {
            m.pointee.has_train_loss_case = PS__V1__JOB_STATUS__HAS_TRAIN_LOSS_TRAIN_LOSS
            m.pointee.train_loss = trainLoss
        }
        if let validationLoss {
            m.pointee.has_validation_loss_case = PS__V1__JOB_STATUS__HAS_VALIDATION_LOSS_VALIDATION_LOSS
            m.pointee.validation_loss = validationLoss
        }
        if let validationAccuracy {
            m.pointee.has_validation_accuracy_case = PS__V1__JOB_STATUS__HAS_VALIDATION_ACCURACY_VALIDATION_ACCURACY
            m.pointee.validation_accuracy = validationAccuracy
        }
        m.pointee.best_epoch = uint64(bestEpoch, "JobStatus.bestEpoch")
        m.pointee.samples_per_second = samplesPerSecond
        if let etaSeconds {
            m.pointee.has_eta_seconds_case = PS__V1__JOB_STATUS__HAS_ETA_SECONDS_ETA_SECONDS
            m.pointee.eta_seconds = etaSeconds
        }
        m.pointee.message = arena.string(message)
        m.pointee.workers = uint32(workers, "JobStatus.workers")
        m.pointee.compute_signature = arena.string(computeSignature)
        m.pointee.excluded_workers = uint32(excludedWorkers, "JobStatus.excludedWorkers")
        m.pointee.allow_mixed_signatures = allowMixedSignatures ? 1 : 0
        if let checkpointStep {
            m.pointee.has_checkpoint_step_case = PS__V1__JOB_STATUS__HAS_CHECKPOINT_STEP_CHECKPOINT_STEP
            m.pointee.checkpoint_step = uint64(checkpointStep, "JobStatus.checkpointStep")
        }
        if let checkpointAgeSeconds {
            m.pointee.has_checkpoint_age_seconds_case = PS__V1__JOB_STATUS__HAS_CHECKPOINT_AGE_SECONDS_CHECKPOINT_AGE_SECONDS
            m.pointee.checkpoint_age_seconds = checkpointAgeSeconds
        }
        m.pointee.checkpoint_error = arena.string(checkpointError)
        m.pointee.stall_reason = arena.string(stallReason)
        m.pointee.consistency = arena.string(consistency)
        m.pointee.n_staleness_counts = stalenessCounts.count
        m.pointee.staleness_counts = arena.array(stalenessCounts.map { uint64($0, "JobStatus.stalenessCounts") })
        return m
    }

    init(c: Ps__V1__JobStatus, _ path: String) throws(WireError) {
        var validationAccuracy: Double?
        if c.has_validation_accuracy_case == PS__V1__JOB_STATUS__HAS_VALIDATION_ACCURACY_VALIDATION_ACCURACY {
            validationAccuracy = try fraction(c.validation_accuracy, "\(path).validation_accuracy")
        }
        var etaSeconds: Double?
        if c.has_eta_seconds_case == PS__V1__JOB_STATUS__HAS_ETA_SECONDS_ETA_SECONDS {
            etaSeconds = try nonNegative(c.eta_seconds, "\(path).eta_seconds")
        }
        self.init(
            jobId: try requiredJobId(c.job_id, "\(path).job_id"),
            name: string(c.name),
            state: try jobStateTable.swift(c.state, "\(path).state"),
            epoch: try int(c.epoch, "\(path).epoch"),
            epochs: try int(c.epochs, "\(path).epochs"),
            step: try int(c.step, "\(path).step"),
            stepsPerEpoch: try int(c.steps_per_epoch, "\(path).steps_per_epoch"),
            trainLoss: c.has_train_loss_case == PS__V1__JOB_STATUS__HAS_TRAIN_LOSS_TRAIN_LOSS ? c.train_loss : nil,
            validationLoss: c.has_validation_loss_case == PS__V1__JOB_STATUS__HAS_VALIDATION_LOSS_VALIDATION_LOSS
                ? c.validation_loss : nil,
            validationAccuracy: validationAccuracy,
            bestEpoch: try int(c.best_epoch, "\(path).best_epoch"),
            samplesPerSecond: try nonNegative(c.samples_per_second, "\(path).samples_per_second"),
            etaSeconds: etaSeconds,
            message: string(c.message),
            workers: try int(c.workers, "\(path).workers"))
        computeSignature = string(c.compute_signature)
        excludedWorkers = try int(c.excluded_workers, "\(path).excluded_workers")
        allowMixedSignatures = c.allow_mixed_signatures != 0
        if c.has_checkpoint_step_case == PS__V1__JOB_STATUS__HAS_CHECKPOINT_STEP_CHECKPOINT_STEP {
            checkpointStep = try int(c.checkpoint_step, "\(path).checkpoint_step")
        }
        if c.has_checkpoint_age_seconds_case == PS__V1__JOB_STATUS__HAS_CHECKPOINT_AGE_SECONDS_CHECKPOINT_AGE_SECONDS {
            checkpointAgeSeconds = try nonNegative(c.checkpoint_age_seconds, "\(path).checkpoint_age_seconds")
        }
        checkpointError = string(c.checkpoint_error)
        stallReason = string(c.stall_reason)
        consistency = string(c.consistency)
        stalenessCounts = try Self.stalenessCounts(c, "\(path).staleness_counts")
    }

    /// One count per staleness 0...ConsistencyLimits.asyncStalenessMax, the largest any mode allows.
    private static func stalenessCounts(_ c: Ps__V1__JobStatus, _ path: String) throws(WireError) -> [Int] {
        let most = ConsistencyLimits.asyncStalenessMax + 1
        guard c.n_staleness_counts <= most else {
            throw WireError(field: path, "\(c.n_staleness_counts) counts, more than \(most) "
                + "(stalenesses 0...ConsistencyLimits.asyncStalenessMax)")
        }
        var counts: [Int] = []
        for i in 0..<c.n_staleness_counts { counts.append(try int(c.staleness_counts[i], "\(path)[\(i)]")) }
        return counts
    }
}

extension StatusReply {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__StatusReply> {
        let m: UnsafeMutablePointer<Ps__V1__StatusReply> = arena.message(ps__v1__status_reply__init)
        m.pointee.cluster = cluster.cMessage(arena)
        m.pointee.n_jobs = jobs.count
        m.pointee.jobs = repeatedMessages(arena, jobs.map { $0.cMessage(arena) })
        return m
    }

    init(c: Ps__V1__StatusReply, _ path: String) throws(WireError) {
        self.init(cluster: try ClusterStatus(c: try required(c.cluster, "\(path).cluster"), "\(path).cluster"),
                  jobs: try repeated(c.jobs, c.n_jobs, "\(path).jobs", JobStatus.init(c:_:)))
    }
}

extension JobResult {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__JobResult> {
        let m: UnsafeMutablePointer<Ps__V1__JobResult> = arena.message(ps__v1__job_result__init)
        m.pointee.job_id = arena.string(jobId)
        m.pointee.state = jobStateTable.c(state)
        m.pointee.summary = summary?.cMessage(arena)
        guard let digest = digestBytes(hex: weightsSHA256) else {
            preconditionFailure("JobResult.weightsSHA256 '\(weightsSHA256)' is neither \"\" nor 64 hex digits")
        }
        m.pointee.weights_sha256 = arena.binary(digest)
        m.pointee.message = arena.string(message)
        return m
    }

    init(c: Ps__V1__JobResult, _ path: String) throws(WireError) {
        let state = try jobStateTable.swift(c.state, "\(path).state")
        // A result answers WaitJob once the job has ended; a running job has no result yet.
        guard state.isFinal else { throw WireError(field: "\(path).state", "\(state.rawValue) is not a final state") }
        var summary: TrainingSummary?
        if let s = c.summary {
            summary = try TrainingSummary(c: s.pointee, "\(path).summary")
        }
        let digest = bytes(c.weights_sha256)
        guard digest.isEmpty || digest.count == Digest.sha256Bytes else {
            throw WireError(field: "\(path).weights_sha256", "\(digest.count) bytes (expected 0 or \(Digest.sha256Bytes))")
        }
        // The digest is of the final parameters, which exist only once an epoch (and so a summary) does.
        guard digest.isEmpty || summary != nil else {
            throw WireError(field: "\(path).weights_sha256", "present without a summary")
        }
        self.init(jobId: try requiredJobId(c.job_id, "\(path).job_id"), state: state, summary: summary,
                  weightsSHA256: digest.isEmpty ? "" : Digest.hex(digest), message: string(c.message))
    }
}

/// "" → no bytes, 64 hex digits (either case) → the 32 digest bytes, anything else → nil.
private func digestBytes(hex: String) -> [UInt8]? {
    let digits = Array(hex.utf8)
    guard digits.isEmpty || digits.count == 2 * Digest.sha256Bytes else { return nil }
    func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    var digest: [UInt8] = []
    digest.reserveCapacity(digits.count / 2)
    for i in stride(from: 0, to: digits.count, by: 2) {
        guard let high = value(digits[i]), let low = value(digits[i + 1]) else { return nil }
        digest.append(high << 4 | low)
    }
    return digest
}

let jobStateTable = EnumTable<JobState, Ps__V1__JobState>([
    (.submitted, PS__V1__JOB_STATE__JOB_STATE_SUBMITTED),
    (.waitingForWorkers, PS__V1__JOB_STATE__JOB_STATE_WAITING_FOR_WORKERS),
    (.running, PS__V1__JOB_STATE__JOB_STATE_RUNNING),
    (.completed, PS__V1__JOB_STATE__JOB_STATE_COMPLETED),
    (.stoppedEarly, PS__V1__JOB_STATE__JOB_STATE_STOPPED_EARLY),
    (.failed, PS__V1__JOB_STATE__JOB_STATE_FAILED),
    (.cancelled, PS__V1__JOB_STATE__JOB_STATE_CANCELLED),
    (.interrupted, PS__V1__JOB_STATE__JOB_STATE_INTERRUPTED),
])

let workerStateTable = EnumTable<WorkerState, Ps__V1__WorkerState>([
    (.idle, PS__V1__WORKER_STATE__WORKER_STATE_IDLE),
    (.working, PS__V1__WORKER_STATE__WORKER_STATE_WORKING),
    (.suspect, PS__V1__WORKER_STATE__WORKER_STATE_SUSPECT),
    (.lost, PS__V1__WORKER_STATE__WORKER_STATE_LOST),
])
