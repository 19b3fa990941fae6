import PSCore
import PSMath
import PSTrain
import PSWire

/// A connection id of the transport (PSTransport's `ConnectionID`): where the shard's weights go.
public typealias Recipient = UInt64

/// What the coordinator tells the parameter shard. The coordinator decides (who pushed what, which
/// parts are complete, when a step ends); the shard holds the values. Every command is a plain value
/// that a later transport can carry to a shard in another process, and the shard answers only by
/// sending weights to workers and `finished` to the coordinator: no call returns a tensor.
public enum ShardCommand: Sendable {
    /// A job starts: its initial parameters (from the spec's seed) and optimizer state are made here.
    case open(jobId: String, spec: JobSpec)
    /// A job resumes from a checkpoint: its parameters, optimizer state and best weights are the saved ones.
    case restore(jobId: String, spec: JobSpec, checkpoint: Checkpoint)
    /// Between two pieces of work: fill in the values of the coordinator's part of a checkpoint
    /// (parameters, optimizer state, best weights) and hand it over to be written.
    /// `keep`: how many checkpoints of the job stay on disk.
    case snapshot(Checkpoint, keep: Int)
    /// Training step `step` starts over `leaves` chunks: its pushes are collected apart from other open
    /// steps' (in delayed mode the next steps' pushes arrive while this one is applied; in ssp/async
    /// several batches are in flight and each is applied when complete).
    case beginStep(step: Int = 0, leaves: Int)
    /// One part of a node's gradient sum for `step` (the coordinator has checked it is new and assigned).
    case push(step: Int = 0, node: Range<Int>, part: Int, gradient: FloatData)
    /// Parts received of a node of `step` that will not be completed (its worker is gone).
    case drop(step: Int = 0, node: Range<Int>)
    /// Sum these complete parts of `step` in tree order and apply them (a step applied in parts, no
    /// clipping), then send their new values to `sendTo`. `keepPrevious`: a worker may still join this
    /// step, so keep these parts' current values for it. Once every part is applied the step ends.
    case applyParts(step: Int = 0, [Int], batchSize: Int, keepPrevious: Bool, sendTo: [Recipient])
    /// Sum every part of `step` and apply it whole (clipping needs the whole gradient's norm; ssp and
    /// async apply each batch whole on arrival).
    case applyStep(step: Int = 0, batchSize: Int)
    /// Send the weights of `version` to `to`: every part (`parts` nil, as one message when none is
    /// applied yet), or only `parts`. Parts already applied this step go as their kept values; an
    /// older version (delayed mode) comes from the versions the shard keeps.
    case sendWeights(version: Int, parts: [Int]?, to: Recipient)
    /// Keep the current parameters as the best epoch's (early stopping restores them).
    case keepBest
    /// Replace the parameters by the kept best ones (the optimizer state stays).
    case restoreBest
    /// Training is over: hand the final parameters to the coordinator.
    case finish
    /// The job ended otherwise (cancelled, failed, interrupted): let everything go.
    case close
}

extension ShardCommand {
    /// Whether the command belongs to a training step (a shard that refused a step ignores these).
    var isStep: Bool {
        switch self {
        case .beginStep, .push, .drop, .applyParts, .applyStep: return true
        default: return false
        }
    }
}

/// What the shard does in answer.
public enum ShardAction: Sendable {
    case send(Recipient, Envelope)
    /// The same envelope to several connections (encoded once).
    case broadcast([Recipient], Envelope)
    /// A complete checkpoint (copies of the values), for the runtime to write off the shard's queue.
    case checkpoint(Checkpoint, keep: Int)
    /// The final parameters and their SHA-256, for the coordinator's `.shardFinished` event.
    case finished(jobId: String, parameters: [Float], sha256: String)
    /// A training step is over: applied (`problem` nil; `version` is the new one), or not, because its
    /// gradient or update was not finite (`version` is still the last good one, every part of the step
    /// applied so far is undone, and the shard ignores the job's steps from now on). For the
    /// coordinator's `.shardStepApplied` event: it goes on with the job only once it has this.
    case stepApplied(jobId: String, step: Int, version: Int, problem: NonFiniteStep.Value?)
    case log(LogLevel, String, [String: String])
}

/// The parameter shard as a pure state machine: for its key range (today the whole vector, split into
/// `keyRanges` ranges each with its own optimizer), pushes → tree sum → optimizer → next version and
/// the weights to send. It is the only owner of parameters and optimizer state on the server; the
/// coordinator reaches it only through `ShardCommand`s, in order (the runtime runs it on its own queue,
/// so the optimizer never delays the coordinator's answers).
public struct ParameterShard {
    public let keyRanges: Int
    public let updateThreads: Int

    struct Job {
        let id: String
        var store: ParameterStore
        /// The push ranges (groups of layers) the parameters are sent and summed in.
        let ranges: [Range<Int>]
        /// Open steps' pushes by step: per part, the nodes pushed (emptied once the part is applied).
        var steps: [Int: StepSums] = [:]
        /// Copies of earlier versions still to be computed on (delayed mode: the `keptVersions` newest,
        /// taken before each step's first update), oldest first.
        var older: [WeightsVersion] = []
        /// How many earlier versions delayed mode needs: d + 1 (the open steps name versions t − d …
        /// t while step t is applied), else 0.
        let keptVersions: Int
        /// Reused step after step: one set of tree-sum buffers per part, the whole gradient for clipping.
        var sumBuffers: [[[Float]]]
        var clipBuffer: [Float] = []
        /// Values of this step's version of the parts applied early, for a worker that joins the step.
        var previous: [[Float]]
        var best: (parameters: [Float], version: Int)?
        /// Whether steps are checked for non-finite gradients and updates (`training.on_non_finite`).
        let checks: Bool
        /// Set once a step was not applied: later step commands of the job are ignored.
        var halted = false
    }

    var job: Job?

    public init(keyRanges: Int = 1, updateThreads: Int = 1) {
        self.keyRanges = keyRanges
        self.updateThreads = updateThreads
    }

    /// Updates applied so far to the open job's parameters.
    public var version: Int? { job?.store.version }

    public mutating func receive(_ command: ShardCommand) -> [ShardAction] {
        if case let .open(jobId, spec) = command { return open(jobId, spec) }
        if case let .restore(jobId, spec, checkpoint) = command {
            _ = open(jobId, spec)
            job!.store.restore(parameters: checkpoint.parameters, version: checkpoint.version,
                               optimizerSteps: checkpoint.optimizerSteps, slots: checkpoint.optimizerSlots)
            if checkpoint.hasBest { job!.best = (checkpoint.bestParameters, checkpoint.bestVersion) }
            job!.older = checkpoint.olderVersions
            return []
        }
        // Taken out while it changes, so the parameters, optimizer state and buffers are referenced
        // once and are updated in place.
        guard var j = job else {
            if case .close = command { return [] }
            return [.log(.error, "shard command without an open job", ["command": "\(command)".prefix(60).description])]
        }
        job = nil
        var out: [ShardAction] = []
        if j.halted && command.isStep {
            // A step was not applied; the coordinator ends training when it hears of it.
            job = j
            return []
        }
        switch command {
        case .open, .restore:
            preconditionFailure("handled above")
        case .snapshot(var checkpoint, let keep):
            precondition(!j.steps.values.contains { $0.isPartlyApplied }, "a checkpoint in the middle of a step")
            checkpoint.parameters = j.store.parameters
            checkpoint.version = j.store.version
            (checkpoint.optimizerSteps, checkpoint.optimizerSlots) = j.store.optimizerState
            if checkpoint.hasBest, let best = j.best {
                checkpoint.bestParameters = best.parameters
                checkpoint.bestVersion = best.version
            }
            // Delayed mode: the earlier versions the next steps compute on (those older are not named again).
            let delay = max(j.keptVersions - 1, 0)
            checkpoint.olderVersions = j.older.filter { $0.version >= j.store.version - delay && $0.version < j.store.version }
            out.append(.checkpoint(checkpoint, keep: keep))
        case let .beginStep(step, leaves):
            j.steps[step] = StepSums(parts: j.ranges.count, leaves: leaves)
        case let .push(step, node, part, gradient):
            j.steps[step]?.sums[part].insert(node, payload: gradient, stats: ChunkStats())
        case let .drop(step, node):
            if var sums = j.steps[step] {
                for l in j.ranges.indices where !sums.applied[l] && sums.sums[l].contains(node) { sums.sums[l].remove(node) }
                j.steps[step] = sums
            }
        case let .applyParts(step, parts, batchSize, keepPrevious, sendTo):
            Self.keepVersion(&j, step: step)
            if let problem = Self.applyParts(step, parts, batchSize: batchSize, keepPrevious: keepPrevious, &j) {
                out += Self.halt(problem, step: step, &j)
            } else {
                out += Self.newValues(of: parts, in: j, to: sendTo)
                if j.steps[step]!.applied.allSatisfy({ $0 }) {
                    j.store.endStep()
                    j.steps[step] = nil
                    out.append(.stepApplied(jobId: j.id, step: step, version: j.store.version, problem: nil))
                }
            }
        case let .applyStep(step, batchSize):
            Self.keepVersion(&j, step: step)
            if let problem = Self.applyStep(step, batchSize: batchSize, &j) {
                out += Self.halt(problem, step: step, &j)
            } else {
                j.steps[step] = nil
                out.append(.stepApplied(jobId: j.id, step: step, version: j.store.version, problem: nil))
            }
        case let .sendWeights(version, parts, recipient):
            out += Self.weights(of: version, parts: parts, in: j, to: recipient)
        case .keepBest:
            j.best = (j.store.parameters, j.store.version)
        case .restoreBest:
            if let best = j.best { j.store.restore(best.parameters, version: best.version) }
        case .finish:
            out.append(.finished(jobId: j.id, parameters: j.store.parameters, sha256: weightsSHA256(j.store.parameters)))
            return out
        case .close:
            return out
        }
        job = j
        return out
    }

    private mutating func open(_ jobId: String, _ spec: JobSpec) -> [ShardAction] {
        let network = spec.network
        let store = ParameterStore(parameters: network.initialParameters(seed: spec.seed), optimizer: spec.optimizer,
                                   shardCount: min(keyRanges, network.parameterCount), updateThreads: updateThreads)
        let ranges = network.layout.pushRanges
        let delay = spec.training.consistency.delay
        job = Job(id: jobId, store: store, ranges: ranges, keptVersions: delay > 0 ? delay + 1 : 0,
                  sumBuffers: ranges.map { _ in [] }, previous: ranges.map { _ in [] },
                  checks: spec.training.onNonFinite != .continue)
        return []
    }

    /// A step that was not finite: every part of it applied so far is undone, so the parameters are
    /// the last good version, and the job's steps stop here (every open step's pushes go).
    private static func halt(_ problem: NonFiniteStep.Value, step: Int, _ j: inout Job) -> [ShardAction] {
        j.store.abandonStep()
        j.steps = [:]
        j.halted = true
        return [.stepApplied(jobId: j.id, step: step, version: j.store.version, problem: problem),
                .log(.warning, "step not applied: non-finite \(problem.rawValue)",
                     ["job": j.id, "version": "\(j.store.version)"])]
    }

    /// Delayed mode, before a step's first update: a copy of the version it replaces, which open steps
    /// (or their chunks reassigned after a worker is lost) still compute on.
    private static func keepVersion(_ j: inout Job, step: Int) {
        guard j.keptVersions > 0, j.steps[step]?.applied.contains(true) == false,
              j.older.last?.version != j.store.version else { return }
        if j.older.count >= j.keptVersions {
            // Reuse the oldest copy's storage.
            var reused = j.older.removeFirst()
            reused.version = j.store.version
            reused.parameters.withUnsafeMutableBufferPointer { kept in
                j.store.parameters.withUnsafeBufferPointer { kept.baseAddress!.update(from: $0.baseAddress!, count: $0.count) }
            }
            j.older.append(reused)
        } else {
            j.older.append(WeightsVersion(version: j.store.version, parameters: j.store.parameters))
        }
    }

    /// Sums and applies `parts` of `step` (each complete). Part by part is bitwise the whole update
    /// (`ParameterStore.applyPart`). With checks, stops at the first part whose gradient or update is
    /// not finite and says which (the caller undoes the step).
    private static func applyParts(_ step: Int, _ parts: [Int], batchSize: Int, keepPrevious: Bool, _ j: inout Job) -> NonFiniteStep.Value? {
        guard var sums = j.steps[step] else { preconditionFailure("parts applied of step \(step), which is not open") }
        defer { j.steps[step] = sums }
        for l in parts {
            precondition(!sums.applied[l] && sums.sums[l].isComplete, "part \(l) applied twice or before it was complete")
            let range = j.ranges[l]
            if keepPrevious {
                if j.previous[l].count != range.count { j.previous[l] = [Float](repeating: 0, count: range.count) }
                j.previous[l].withUnsafeMutableBufferPointer { kept in
                    j.store.parameters.withUnsafeBufferPointer { p in
                        kept.baseAddress!.update(from: p.baseAddress! + range.lowerBound, count: range.count)
                    }
                }
            }
            var buffers: [[Float]] = []
            swap(&buffers, &j.sumBuffers[l])
            var problem: NonFiniteStep.Value?
            do {
                let sum = sums.sums[l].combinedGradient(reusing: &buffers).payload
                sum.withUnsafeBytes { g in
                    if j.checks {
                        problem = j.store.applyPartChecked(range, gradientSum: g.baseAddress!, batchCount: batchSize)
                    } else {
                        j.store.applyPart(range, gradientSum: g.baseAddress!, batchCount: batchSize)
                    }
                }
            }
            j.sumBuffers[l] = buffers
            if let problem { return problem }
            sums.sums[l] = NodeCollector(total: sums.sums[l].total)
            sums.applied[l] = true
        }
        return nil
    }

    /// The whole step at once: one part is the whole gradient already; several are put together.
    /// With checks, a non-finite gradient or update is not applied and is named.
    private static func applyStep(_ step: Int, batchSize: Int, _ j: inout Job) -> NonFiniteStep.Value? {
        guard let sums = j.steps[step] else { preconditionFailure("step \(step) applied, which is not open") }
        var problem: NonFiniteStep.Value?
        func apply(_ sum: FloatData) {
            if j.checks {
                problem = j.store.applyChecked(gradientSum: sum, batchCount: batchSize)
            } else {
                j.store.apply(gradientSum: sum, batchCount: batchSize)
            }
        }
        if j.ranges.count == 1 {
            var buffers: [[Float]] = []
            swap(&buffers, &j.sumBuffers[0])
            do {
                let sum = sums.sums[0].combinedGradient(reusing: &buffers).payload
                apply(sum)
            }
            j.sumBuffers[0] = buffers
        } else {
            let count = j.ranges.last!.upperBound
            if j.clipBuffer.count != count { j.clipBuffer = [Float](repeating: 0, count: count) }
            for (l, range) in j.ranges.enumerated() {
                var buffers: [[Float]] = []
                swap(&buffers, &j.sumBuffers[l])
                do {
                    let sum = sums.sums[l].combinedGradient(reusing: &buffers).payload
                    j.clipBuffer.withUnsafeMutableBytes { whole in
                        sum.withUnsafeBytes { whole.baseAddress!.advanced(by: range.lowerBound * 4).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                    }
                }
                j.sumBuffers[l] = buffers
            }
            apply(FloatData(j.clipBuffer))
        }
        return problem
    }

    /// The applied parts' new values (the next version) to the workers computing the step. The frames
    /// share the parameters' storage: the runtime encodes them before the next command updates it.
    private static func newValues(of parts: [Int], in j: Job, to recipients: [Recipient]) -> [ShardAction] {
        guard !recipients.isEmpty else { return [] }
        let version = j.store.version + 1
        return parts.map { l in
            .broadcast(recipients, Envelope(requestId: 0, message: .weights(Weights(
                jobId: j.id, version: version,
                tensor: TensorSlice(offset: j.ranges[l].lowerBound, data: FloatData(j.store.parameters[j.ranges[l]]))))))
        }
    }

    /// The weights of `version` for one worker. Mid-step, parts applied early hold the next version,
    /// so their values of this version are the kept ones; an earlier version is a kept copy.
    private static func weights(of version: Int, parts: [Int]?, in j: Job, to recipient: Recipient) -> [ShardAction] {
        let midStep = j.steps.values.contains { $0.isPartlyApplied }
        func message(_ offset: Int, _ data: FloatData) -> ShardAction {
            .send(recipient, Envelope(requestId: 0, message: .weights(Weights(
                jobId: j.id, version: version, tensor: TensorSlice(offset: offset, data: data)))))
        }
        if let kept = j.older.last(where: { $0.version == version }), version < j.store.version || midStep {
            let values = FloatData(kept.parameters)
            guard let parts else { return [message(0, values)] }
            return parts.map { l in message(j.ranges[l].lowerBound, values.slice(j.ranges[l])) }
        }
        guard version == j.store.version else {
            return [.log(.error, "weights asked for a version the shard does not hold",
                         ["job": j.id, "version": "\(version)", "shard_version": "\(j.store.version)",
                          "kept": j.older.map { "\($0.version)" }.joined(separator: ",")])]
        }
        let applied = j.steps.values.first { $0.isPartlyApplied }?.applied
        if parts == nil && applied == nil {
            return [message(0, FloatData(j.store.parameters))]
        }
        return (parts ?? Array(j.ranges.indices)).map { l in
            let range = j.ranges[l]
            let values = applied?[l] == true ? FloatData(j.previous[l]) : FloatData(j.store.parameters[range])
            return message(range.lowerBound, values)
        }
    }
}

/// One open step's pushes on the shard: per part, the nodes in, and which parts are applied.
struct StepSums {
    var sums: [NodeCollector<FloatData>]
    var applied: [Bool]

    init(parts: Int, leaves: Int) {
        sums = (0..<parts).map { _ in NodeCollector(total: leaves) }
        applied = [Bool](repeating: false, count: parts)
    }

    /// Some parts applied, not all: the parameters are between two versions.
    var isPartlyApplied: Bool { applied.contains(true) && !applied.allSatisfy { $0 } }
}

