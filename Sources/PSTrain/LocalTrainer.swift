import PSCore
import PSData
import PSMath

/// What the trainer reports while it runs; `psctl` turns these into progress lines.
public enum TrainingEvent: Sendable {
    case started(TrainingPlan)
    /// After each step: the 0-based step within the epoch, the batch's mean loss, and the epoch's
    /// samples per second so far.
    case step(epoch: Int, step: Int, batchLoss: Double, samplesPerSecond: Double)
    case epochEnded(EpochReport)
}

/// The shape of a run, known before the first step.
public struct TrainingPlan: Equatable, Sendable {
    public var epochs: Int
    public var stepsPerEpoch: Int
    public var trainSamples: Int
    public var validationSamples: Int
    public var testSamples: Int
    public var parameters: Int
}

/// The single-process trainer, `psctl train --local`: the same chunks, the same reduction tree and
/// the same update as the cluster, in one process. It is the oracle the cluster is compared with.
///
/// With `delayed` (d), global step t (counted from 0 across epochs, and equal to the weights' version
/// before it) computes its gradient on the weights of version max(0, t − d) and applies it to version t,
/// as the cluster does with d steps in flight. `ssp` and `async` train as `sync`: a staleness of 0
/// meets any bound, and their cluster results depend on timing anyway.
public struct LocalTrainer {
    public let spec: JobSpec
    public let data: LoadedData

    public init(spec: JobSpec, data: LoadedData) {
        self.spec = spec
        self.data = data
    }

    public struct Result: Sendable {
        public var model: TrainedModel
        public var weightsSHA256: String
        public var history: [EpochReport]
        /// The step that was not applied because it was not finite, if one was (`training.on_non_finite`
        /// fail or stop): with fail the run failed there and `model` holds the kept weights, unevaluated.
        public var nonFinite: NonFiniteStep?
        /// Whether the run failed (a non-finite step with `on_non_finite: fail`).
        public var failed: Bool { nonFinite != nil && model.spec.training.onNonFinite == .fail }
        /// In a failed run, the epoch whose (best) weights `model` holds; nil: the last good weights.
        public var failedKeptEpoch: Int?
    }

    public func run(progress: (TrainingEvent) -> Void = { _ in }) -> Result {
        let network = spec.network
        let train = data.train
        let batchSize = spec.training.batchSize
        let chunks = spec.training.chunks
        let stepsPerEpoch = ChunkPlan.stepsPerEpoch(count: train.count, batchSize: batchSize)
        let plan = TrainingPlan(epochs: spec.training.epochs, stepsPerEpoch: stepsPerEpoch, trainSamples: train.count,
                                validationSamples: data.validation?.count ?? 0, testSamples: data.test?.count ?? 0,
                                parameters: network.parameterCount)
        progress(.started(plan))

        var store = ParameterStore(parameters: network.initialParameters(seed: spec.seed), optimizer: spec.optimizer)
        let engine = StepEngine(network: network, chunkCapacity: (batchSize + chunks - 1) / chunks)
        let evaluation = Workspace(network: network, capacity: ChunkPlan.evaluationChunkSamples)
        var gradient = [Float](repeating: 0, count: network.parameterCount)
        // Chunk layout of a full batch; the last batch of an epoch gets its own.
        let fullBatchChunks = ChunkPlan.ranges(batchSize: batchSize, chunks: chunks)
        let delay = spec.training.consistency.delay
        // `delayed`: copies of versions max(0, t − d) ..< t before step t, oldest first (at most d; the
        // optimizer state is only ever the newest's). Empty in the other modes and before step 0.
        var older: [[Float]] = []

        var ledger = TrainingLedger(spec: spec)
        var trainingSeconds = 0.0
        var trainedSamples = 0
        let clock = ContinuousClock()
        let checks = spec.training.onNonFinite != .continue
        var nonFinite: NonFiniteStep?

        for epoch in 0..<spec.training.epochs {
            let order = epochPermutation(seed: spec.seed, epoch: epoch, count: train.count)
            var epochStats = ChunkStats()
            let epochStart = clock.now
            order.withUnsafeBufferPointer { order in
                for step in 0..<stepsPerEpoch {
                    let batchStart = step * batchSize
                    let batchCount = min(batchSize, train.count - batchStart)
                    let ranges = batchCount == batchSize
                        ? fullBatchChunks : ChunkPlan.ranges(batchSize: batchCount, chunks: chunks)
                    let globalStep = epoch * stepsPerEpoch + step
                    let stats = (older.first ?? store.parameters).withUnsafeBufferPointer { p in
                        gradient.withUnsafeMutableBufferPointer { g in
                            engine.reduceNode(first: 0, count: chunks, totalChunks: chunks, parameters: p.baseAddress!,
                                              dataset: train, step: globalStep, dropoutSeed: spec.seed,
                                              chunkIndices: { c in
                                                  UnsafeBufferPointer(rebasing: order[(batchStart + ranges[c].lowerBound)..<(batchStart + ranges[c].upperBound)])
                                              },
                                              into: g.baseAddress!)
                        }
                    }
                    if delay > 0 {
                        // Version t, kept for step t + d, before the update makes version t + 1.
                        if older.count == delay { older.removeFirst() }
                        older.append(store.parameters)
                    }
                    if let problem = Self.apply(gradient, stats: stats, batchCount: batchCount, checks: checks, to: &store) {
                        nonFinite = NonFiniteStep(problem, step: globalStep + 1, epoch: epoch + 1)
                        break
                    }
                    epochStats = epochStats + stats
                    let seconds = Self.seconds(clock.now - epochStart)
                    progress(.step(epoch: epoch, step: step, batchLoss: stats.lossSum / Double(batchCount),
                                   samplesPerSecond: Double(epochStats.samples) / max(seconds, 1e-9)))
                }
            }
            let epochSeconds = Self.seconds(clock.now - epochStart)
            trainingSeconds += epochSeconds
            trainedSamples += epochStats.samples
            if let nonFinite, spec.training.onNonFinite == .fail {
                return failed(nonFinite, ledger: ledger, store: store, partial: epochStats,
                              samplesPerSecond: Double(trainedSamples) / max(trainingSeconds, 1e-9))
            }
            // With `stop`, the epoch ends at the last good step and training stops there.
            let validation = data.validation.map {
                Evaluation.stats(network: network, parameters: store.parameters, dataset: $0, workspace: evaluation)
            }
            let report = ledger.endEpoch(epoch + 1, train: epochStats, validation: validation, seconds: epochSeconds,
                                         parameters: store.parameters, version: store.version, stop: nonFinite != nil)
            progress(.epochEnded(report))
            if ledger.finished { break }
        }

        let kept = ledger.keptParameters(current: store.parameters, currentVersion: store.version)
        let test = data.test.map {
            Evaluation.stats(network: network, parameters: kept.parameters, dataset: $0, workspace: evaluation)
        }
        var summary = ledger.summary(keptEpoch: kept.epoch, test: test,
                                     samplesPerSecond: Double(trainedSamples) / max(trainingSeconds, 1e-9))
        summary.computeSignatures = [ComputeEnvironment.signature.description]
        let model = TrainedModel(spec: spec, preprocessing: data.preprocessing, parameters: kept.parameters, summary: summary)
        return Result(model: model, weightsSHA256: weightsSHA256(kept.parameters), history: ledger.history,
                      nonFinite: nonFinite)
    }

    /// Applies one step's reduced gradient; with `checks` (`on_non_finite` fail or stop) not when its
    /// loss, gradient or update is not finite, and then says which (the store keeps the last good weights).
    private static func apply(_ gradient: [Float], stats: ChunkStats, batchCount: Int, checks: Bool,
                              to store: inout ParameterStore) -> NonFiniteStep.Value? {
        guard checks else {
            store.apply(gradientSum: gradient, batchCount: batchCount)
            return nil
        }
        // The loss first, as the coordinator checks it before any part of the step is applied.
        guard stats.lossSum.isFinite else { return .loss }
        return store.applyChecked(gradientSum: FloatData(gradient), batchCount: batchCount)
    }

    /// A run that failed on `step`: the model holds the weights the ledger keeps (the last good ones,
    /// or the best epoch's), not evaluated on the test set.
    private func failed(_ step: NonFiniteStep, ledger: TrainingLedger, store: ParameterStore, partial: ChunkStats,
                        samplesPerSecond: Double) -> Result {
        let kept = ledger.keptAfterFailure(currentVersion: store.version)
        let parameters = kept.epoch == nil ? store.parameters : ledger.bestParameters!
        var summary = ledger.failureSummary(partial: partial, keptEpoch: kept.epoch, samplesPerSecond: samplesPerSecond)
        summary.computeSignatures = [ComputeEnvironment.signature.description]
        let model = TrainedModel(spec: spec, preprocessing: data.preprocessing, parameters: parameters, summary: summary)
        return Result(model: model, weightsSHA256: weightsSHA256(parameters), history: ledger.history, nonFinite: step,
                      failedKeptEpoch: kept.epoch)
    }

    public static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}
