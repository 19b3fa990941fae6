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
    /// A training step starts over `leaves` chunks: pushes from now on belong to it.
    case beginStep(leaves: Int)
    /// One part of a node's gradient sum (the coordinator has checked it is new and assigned).
    case push(node: Range<Int>, part: Int, gradient: FloatData)
    /// Parts received of a node that will not be completed (its worker is gone).
    case drop(node: Range<Int>)
    /// Sum these complete parts in tree order and apply them (a step applied in parts, no clipping),
    /// then send their new values to `sendTo`. `keepPrevious`: a worker may still join this step, so
    /// keep these parts' current values for it. Once every part is applied the step ends.
    case applyParts([Int], batchSize: Int, keepPrevious: Bool, sendTo: [Recipient])
    /// Sum every part and apply the whole step (clipping needs the whole gradient's norm).
    case applyStep(batchSize: Int)
    /// Send the weights of `version` to `to`: every part (`parts` nil, as one message when none is
    /// applied yet), or only `parts`. Parts already applied this step go as their kept values.
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
    case stepApplied(jobId: String, version: Int, problem: NonFiniteStep.Value?)
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
        /// Per part, the nodes pushed this step (emptied once the part is applied).
        var sums: [NodeCollector<FloatData>]
        var applied: [Bool]
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
            precondition(!j.applied.contains(true) || j.applied.allSatisfy { $0 }, "a checkpoint in the middle of a step")
            checkpoint.parameters = j.store.parameters
            checkpoint.version = j.store.version
            (checkpoint.optimizerSteps, checkpoint.optimizerSlots) = j.store.optimizerState
            if checkpoint.hasBest, let best = j.best {
                checkpoint.bestParameters = best.parameters
                checkpoint.bestVersion = best.version
            }
            out.append(.checkpoint(checkpoint, keep: keep))
        case let .beginStep(leaves):
            j.sums = j.ranges.map { _ in NodeCollector(total: leaves) }
            j.applied = j.ranges.map { _ in false }
        case let .push(node, part, gradient):
            j.sums[part].insert(node, payload: gradient, stats: ChunkStats())
        case let .drop(node):
            for l in j.ranges.indices where !j.applied[l] && j.sums[l].contains(node) { j.sums[l].remove(node) }
        case let .applyParts(parts, batchSize, keepPrevious, sendTo):
            if let problem = Self.applyParts(parts, batchSize: batchSize, keepPrevious: keepPrevious, &j) {
                out += Self.halt(problem, &j)
            } else {
                out += Self.newValues(of: parts, in: j, to: sendTo)
                if j.applied.allSatisfy({ $0 }) {
                    j.store.endStep()
                    out.append(.stepApplied(jobId: j.id, version: j.store.version, problem: nil))
                }
            }
        case let .applyStep(batchSize):
            if let problem = Self.applyStep(batchSize: batchSize, &j) {
                out += Self.halt(problem, &j)
            } else {
                out.append(.stepApplied(jobId: j.id, version: j.store.version, problem: nil))
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
        job = Job(id: jobId, store: store, ranges: ranges, sums: ranges.map { _ in NodeCollector(total: 1) },
                  applied: ranges.map { _ in false }, sumBuffers: ranges.map { _ in [] }, previous: ranges.map { _ in [] },
                  checks: spec.training.onNonFinite != .continue)
        return []
    }

    /// A step that was not finite: every part of it applied so far is undone, so the parameters are
    /// the last good version, and the job's steps stop here.
    private static func halt(_ problem: NonFiniteStep.Value, _ j: inout Job) -> [ShardAction] {
        j.store.abandonStep()
        j.applied = j.ranges.map { _ in false }
        j.sums = j.ranges.map { _ in NodeCollector(total: 1) }
        j.halted = true
        return [.stepApplied(jobId: j.id, version: j.store.version, problem: problem),
                .log(.warning, "step not applied: non-finite \(problem.rawValue)",
                     ["job": j.id, "version": "\(j.store.version)"])]
    }

    /// Sums and applies `parts` (each complete). Part by part is bitwise the whole update
    /// (`ParameterStore.applyPart`). With checks, stops at the first part whose gradient or update is
    /// not finite and says which (the caller undoes the step).
    private static func applyParts(_ parts: [Int], batchSize: Int, keepPrevious: Bool, _ j: inout Job) -> NonFiniteStep.Value? {
        for l in parts {
            precondition(!j.applied[l] && j.sums[l].isComplete, "part \(l) applied twice or before it was complete")
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
                let sum = j.sums[l].combinedGradient(reusing: &buffers).payload
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
            j.sums[l] = NodeCollector(total: j.sums[l].total)
            j.applied[l] = true
        }
        return nil
    }

    /// The whole step at once: one part is the whole gradient already; several are put together.
    /// With checks, a non-finite gradient or update is not applied and is named.
    private static func applyStep(batchSize: Int, _ j: inout Job) -> NonFiniteStep.Value? {
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
                let sum = j.sums[0].combinedGradient(reusing: &buffers).payload
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
                    let sum = j.sums[l].combinedGradient(reusing: &buffers).payload
                    j.clipBuffer.withUnsafeMutableBytes { whole in
                        sum.withUnsafeBytes { whole.baseAddress!.advanced(by: range.lowerBound * 4).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                    }
                }
                j.sumBuffers[l] = buffers
            }
            apply(FloatData(j.clipBuffer))
        }
        for l in j.ranges.indices { j.sums[l] = NodeCollector(total: j.sums[l].total) }
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
    /// so their values of this version are the kept ones.
    private static func weights(of version: Int, parts: [Int]?, in j: Job, to recipient: Recipient) -> [ShardAction] {
        let appliedThisStep = j.applied.contains(true) && !j.applied.allSatisfy { $0 }
        guard version == j.store.version else {
            return [.log(.error, "weights asked for a version the shard does not hold",
                         ["job": j.id, "version": "\(version)", "shard_version": "\(j.store.version)"])]
        }
        func message(_ offset: Int, _ data: FloatData) -> ShardAction {
            .send(recipient, Envelope(requestId: 0, message: .weights(Weights(
                jobId: j.id, version: version, tensor: TensorSlice(offset: offset, data: data)))))
        }
        if parts == nil && !appliedThisStep {
            return [message(0, FloatData(j.store.parameters))]
        }
        return (parts ?? Array(j.ranges.indices)).map { l in
            let range = j.ranges[l]
            let values = appliedThisStep && j.applied[l] ? FloatData(j.previous[l]) : FloatData(j.store.parameters[range])
            return message(range.lowerBound, values)
        }
    }
}
