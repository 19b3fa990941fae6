import PSCore
import PSTransport
import PSWire

/// Every job the server knows, in submission order, with what `psctl status` and `wait` show of it.
/// A job's state changes only through its `JobLifecycle`.
struct JobRegistry {
    struct Job {
        let id: String
        let spec: JobSpec
        /// The only way the state changes: events its transition table allows.
        var lifecycle = JobLifecycle()
        var state: JobState { lifecycle.state }
        var message = ""
        var result: JobResult?
        var model: TrainedModel?
        var waiters: [(ConnectionID, UInt64)] = []
        // Progress, as status shows it.
        var epoch = 0
        var step = 0
        var stepsPerEpoch = 0
        var trainLoss: Double?
        var validationLoss: Double?
        var validationAccuracy: Double?
        var bestEpoch = 0
        var samplesPerSecond = 0.0
        var etaSeconds: Double?
        /// Read back from the journal after a restart and not ended: it resumes (observers are told).
        var recovered = false
        /// The newest checkpoint written or resumed from: the training steps it holds and when (the
        /// coordinator's clock); why the last one could not be written.
        var checkpointSteps: Int?
        var checkpointAt: Double?
        var checkpointError = ""
        /// Its checkpoints stay once it ended (it failed on a non-finite step: they hold good weights).
        var keepsCheckpoints = false
        /// When its data began loading (the coordinator's clock), while it loads.
        var preparingSince: Double?
        /// Whether the log already said, this time, that its load is slow (said once per load).
        var slowLoadLogged = false
        /// `ssp` and `async`: pushes applied at each staleness (index = staleness) in this run; the
        /// coordinator's step code counts them, status shows them.
        var stalenessCounts: [Int] = []

        /// One more applied batch `staleness` versions stale.
        mutating func countStaleness(_ staleness: Int) {
            if stalenessCounts.count <= staleness { stalenessCounts += [Int](repeating: 0, count: staleness + 1 - stalenessCounts.count) }
            stalenessCounts[staleness] += 1
        }
    }

    var jobs: [String: Job] = [:]
    var order: [String] = []
    var nextNumber: Int

    init(firstJobNumber: Int) { nextNumber = firstJobNumber }

    /// Jobs not yet ended.
    var unfinishedCount: Int { jobs.values.filter { !$0.state.isFinal }.count }

    /// Registers a submitted job under the next id.
    mutating func add(_ spec: JobSpec) -> String {
        let jobId = "job-\(nextNumber)"
        nextNumber += 1
        jobs[jobId] = Job(id: jobId, spec: spec)
        order.append(jobId)
        return jobId
    }

    /// A job the journal holds: ended ones keep their result (and show its figures), others are queued.
    mutating func addRecovered(_ recovered: RecoveredJob) {
        var job = Job(id: recovered.id, spec: recovered.spec)
        if let result = recovered.result, result.state.isFinal {
            job.lifecycle = JobLifecycle(ended: result.state)
            job.result = result
            job.message = result.message
            if let s = result.summary {
                job.epoch = s.epochsRun
                job.trainLoss = s.trainLoss
                job.validationLoss = s.validationLoss
                job.validationAccuracy = s.validationAccuracy
                job.bestEpoch = s.bestEpoch
                job.samplesPerSecond = s.samplesPerSecond
            }
        } else {
            job.recovered = true
        }
        jobs[job.id] = job
        order.append(job.id)
    }

    /// The oldest queued job, when none is being prepared, waiting for workers or running: one job at a time.
    var nextToStart: String? {
        guard !jobs.values.contains(where: { [.preparing, .waitingForWorkers, .running].contains($0.lifecycle.phase) })
        else { return nil }
        return order.first { jobs[$0]!.lifecycle.phase == .queued }
    }

    /// Records a job's result and returns the waiters to answer (they are let go).
    mutating func end(_ jobId: String, result: JobResult, message: String) -> [(ConnectionID, UInt64)] {
        jobs[jobId]!.message = message
        jobs[jobId]!.result = result
        jobs[jobId]!.etaSeconds = nil
        defer { jobs[jobId]!.waiters = [] }
        return jobs[jobId]!.waiters
    }

    /// Keeps only the newest models in memory (the files stay in the data directory).
    mutating func retainNewestModels() {
        let withModels = order.filter { jobs[$0]!.model != nil }
        for old in withModels.dropLast(CoordinatorLimits.retainedModelsMax) { jobs[old]!.model = nil }
    }

    /// A closed connection waits for nothing.
    mutating func dropWaiters(on id: ConnectionID) {
        for jobId in jobs.keys { jobs[jobId]!.waiters.removeAll { $0.0 == id } }
    }

    /// What `psctl status` shows of `jobId`; `workers`: how many compute it.
    func status(of jobId: String, workers: Int, now: Double) -> JobStatus {
        let job = jobs[jobId]!
        var status = JobStatus(jobId: job.id, name: job.spec.name, state: job.state, epoch: job.epoch,
                         epochs: job.spec.training.epochs, step: job.step, stepsPerEpoch: job.stepsPerEpoch,
                         trainLoss: job.trainLoss, validationLoss: job.validationLoss,
                         validationAccuracy: job.validationAccuracy, bestEpoch: job.bestEpoch,
                         samplesPerSecond: job.samplesPerSecond, etaSeconds: job.etaSeconds,
                         message: job.lifecycle.phase == .preparing ? Self.preparingMessage : job.message,
                         workers: workers)
        status.allowMixedSignatures = job.spec.training.allowMixedSignatures
        status.consistency = job.spec.training.consistency.description
        status.stalenessCounts = job.stalenessCounts
        if !job.state.isFinal {
            status.checkpointStep = job.checkpointSteps
            status.checkpointAgeSeconds = job.checkpointAt.map { max(now - $0, 0) }
            status.checkpointError = job.checkpointError
        }
        return status
    }

    /// What `psctl status` shows for a job whose data is being prepared.
    static let preparingMessage = "loading data"
}
