import Dispatch
import PSCore
import PSData
import PSMath
import PSTrain
import PSWire

/// The computing half of a worker: a job's data, step engine and evaluation workspace, the weights
/// buffer and the gradient buffers, and the computation of one `ComputeOrder`. It decides nothing
/// (`WorkerStateMachine` does); it is used from one thread at a time: the service's compute queue,
/// or a test driving many workers in one process.
public final class WorkerCompute: @unchecked Sendable {
    /// What computing a job needs, made by `load`.
    final class Job {
        let jobId: String
        let spec: JobSpec
        let network: Network
        let data: LoadedData
        let engine: StepEngine
        let evaluation: Workspace
        /// The permutation of the epoch last used (recomputing it per step would cost more than the step).
        var order: (epoch: Int, indices: [Int32])?
        /// The weights being computed with and one gradient buffer per pushed node, reused every step.
        var parameters: [Float] = []
        var gradients: [GradientBuffer] = []

        init(jobId: String, spec: JobSpec, data: LoadedData) {
            self.jobId = jobId
            self.spec = spec
            network = spec.network
            self.data = data
            let chunks = spec.training.chunks
            engine = StepEngine(network: network, chunkCapacity: (spec.training.batchSize + chunks - 1) / chunks)
            evaluation = Workspace(network: network, capacity: ChunkPlan.evaluationChunkSamples)
        }
    }

    private let loadData: @Sendable (JobSpec) throws -> LoadedData
    private var job: Job?
    private var loadFailure: (jobId: String, message: String)?

    /// `loadData` reads a job's data (the tests share one load among many workers).
    public init(loadData: @escaping @Sendable (JobSpec) throws -> LoadedData = { try DataLoader.load($0) }) {
        self.loadData = loadData
    }

    /// Loads a job's data and sets up its computation: the training samples, or why it failed.
    public func load(jobId: String, spec: JobSpec) -> Result<Int, WorkerStateMachine.LoadFailure> {
        job = nil
        loadFailure = nil
        do {
            let data = try loadData(spec)
            job = Job(jobId: jobId, spec: spec, data: data)
            return .success(data.train.count)
        } catch {
            loadFailure = (jobId, "\(error)")
            return .failure(WorkerStateMachine.LoadFailure("\(error)"))
        }
    }

    /// Computes `order`. Training: each node's push ranges go to `push` as each becomes final (views of
    /// the node's gradient buffer, valid until `beforeReusingBuffers` returns on a later call: the
    /// caller sends them by then). Evaluation: one result per node in the report.
    public func run(_ order: ComputeOrder, beforeReusingBuffers: () -> Void = {},
                    push: (PushGradient) -> Void) -> ComputeReport {
        let a = order.assignment
        var report = ComputeReport(jobId: a.jobId, kind: a.kind)
        guard let job, job.jobId == a.jobId else {
            report.failure = loadFailure?.jobId == a.jobId ? loadFailure!.message : "no data loaded for this job"
            return report
        }
        let started = ContinuousClock.now
        assemble(order.weights, into: job)
        switch a.kind {
        case .train:
            train(a, job: job, report: &report, beforeReusingBuffers: beforeReusingBuffers, push: push)
        case .validate, .test:
            guard let dataset = a.kind == .validate ? job.data.validation : job.data.test else {
                report.failure = "assignment for a split this job does not have (\(a.kind))"
                return report
            }
            report.results = a.subtrees.map { node in
                let stats = job.parameters.withUnsafeBufferPointer { p in
                    Evaluation.stats(network: job.network, parameters: p, dataset: dataset,
                                     chunks: node.firstChunk..<(node.firstChunk + node.chunkCount), workspace: job.evaluation)
                }
                return .evalResult(EvalResult(jobId: a.jobId, kind: a.kind, epoch: a.epoch, subtree: node,
                                              lossSum: stats.lossSum, correct: stats.correct, samples: stats.samples))
            }
        }
        let d = ContinuousClock.now - started
        report.seconds = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        return report
    }

    /// The one copy of the weights, from the frames they came in to the job's weights buffer.
    private func assemble(_ parts: [TensorSlice], into job: Job) {
        Self.assemble(parts, count: job.network.parameterCount, into: &job.parameters)
    }

    /// Copies `parts` (in offset order, covering `0..<count` once) into `parameters`.
    static func assemble(_ parts: [TensorSlice], count: Int, into parameters: inout [Float]) {
        if parts.count == 1 {
            parts[0].data.copy(into: &parameters)
            return
        }
        if parameters.count != count { parameters = [Float](repeating: 0, count: count) }
        parameters.withUnsafeMutableBytes { out in
            for part in parts {
                part.data.withUnsafeBytes { b in
                    if b.count > 0 {
                        out.baseAddress!.advanced(by: part.offset * MemoryLayout<Float>.size)
                            .copyMemory(from: b.baseAddress!, byteCount: b.count)
                    }
                }
            }
        }
    }

    private func train(_ a: Assignment, job: Job, report: inout ComputeReport, beforeReusingBuffers: () -> Void,
                       push pushNow: (PushGradient) -> Void) {
        withoutActuallyEscaping(pushNow) { push in
            train(a, job: job, report: &report, beforeReusingBuffers: beforeReusingBuffers, escapingPush: push)
        }
    }

    private func train(_ a: Assignment, job: Job, report: inout ComputeReport, beforeReusingBuffers: () -> Void,
                       escapingPush push: @escaping (PushGradient) -> Void) {
        let data = job.data
        if job.order?.epoch != a.epoch {
            job.order = (a.epoch, epochPermutation(seed: job.spec.seed, epoch: a.epoch, count: data.train.count))
        }
        let order = job.order!.indices
        let chunks = job.spec.training.chunks
        let ranges = ChunkPlan.ranges(batchSize: a.batchSize, chunks: chunks)
        let parameterCount = job.network.parameterCount
        while job.gradients.count < a.subtrees.count {
            job.gradients.append(GradientBuffer(count: parameterCount))
        }
        // The previous step's pushes are views of these buffers: they must have been sent (encoded)
        // before they are overwritten. (They always have been by now: the server starts a step only
        // after the last one's pushes arrived. This makes it certain.)
        beforeReusingBuffers()
        for (k, node) in a.subtrees.enumerated() {
            let buffer = job.gradients[k]
            // reduceNode overwrites every element; each push range leaves as soon as it is final
            // and travels (and is summed, and applied) while the earlier layers compute.
            let stats = job.parameters.withUnsafeBufferPointer { p in
                order.withUnsafeBufferPointer { o in
                    job.engine.reduceNode(first: node.firstChunk, count: node.chunkCount, totalChunks: chunks,
                                          parameters: p.baseAddress!, dataset: data.train, step: a.step,
                                          dropoutSeed: job.spec.seed,
                                          chunkIndices: { c in
                                              UnsafeBufferPointer(rebasing: o[(a.batchStart + ranges[c].lowerBound)..<(a.batchStart + ranges[c].upperBound)])
                                          }, into: buffer.pointer) { range, stats in
                        push(PushGradient(jobId: a.jobId, step: a.step, subtree: node,
                                          gradient: TensorSlice(offset: range.lowerBound, data: buffer.view(range)),
                                          lossSum: stats.lossSum, correct: stats.correct, samples: stats.samples))
                    }
                }
            }
            report.samples += stats.samples
            report.pushBytes += parameterCount * MemoryLayout<Float>.size
        }
    }
}

/// A node's gradient sum, reused step after step. Its pushes are views of it (`view`), which hold it
/// alive until they are encoded; the worker does not write it again before then (see `run`).
final class GradientBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { pointer.deallocate() }

    /// Values `range`, as the bytes of a push.
    func view(_ range: Range<Int>) -> FloatData {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "view \(range) outside 0..<\(count)")
        let bytes = UnsafeRawBufferPointer(start: pointer + range.lowerBound, count: range.count * MemoryLayout<Float>.size)
        return FloatData(viewing: ReceivedBytes(bytes, owner: self))
    }
}
