import PSCore
import PSMath
@testable import PSShard
import PSTestSupport
import PSTrain
import PSWire
import XCTest

/// The parameter shard, state by command: no job open, a job open between steps, mid-step with a part
/// applied, and after the job was handed over. Every update is checked bitwise against
/// `ParameterStore` given the same tree sums, the rule the local trainer follows.
final class ParameterShardTests: XCTestCase {
    // Two push ranges (784·64 + 64, then 64·4096 + 4096 + 4096·10 + 10), four chunks.
    let spec = smallMNISTJob(name: "shard", seed: 3, validationSplit: 0,
                             layers: [LayerSpec(units: 64, activation: .relu), LayerSpec(units: 4096, activation: .relu),
                                      LayerSpec(units: 10, activation: .softmax)],
                             optimizer: OptimizerSpec(kind: .adam, learningRate: 0.01), batchSize: 8, chunks: 4, epochs: 1)
    var ranges: [Range<Int>] { spec.network.layout.pushRanges }
    var count: Int { spec.network.parameterCount }

    /// A node's gradient sum, different per node and part.
    func gradient(_ node: Range<Int>, _ part: Int) -> FloatData {
        FloatData(ranges[part].map { Float(($0 % 97) - 48) * 0.001 * Float(node.lowerBound + 1) })
    }

    /// What the shard should compute: the same nodes summed in tree order, applied by a store.
    func expected(nodes: [Range<Int>], leaves: Int, batch: Int, clip: Float? = nil) -> ParameterStore {
        var optimizer = spec.optimizer
        optimizer.clipNorm = clip
        var store = ParameterStore(parameters: spec.network.initialParameters(seed: spec.seed), optimizer: optimizer)
        var whole: [Float] = []
        for l in ranges.indices {
            var collector = NodeCollector<FloatData>(total: leaves)
            for n in nodes { collector.insert(n, payload: gradient(n, l), stats: ChunkStats()) }
            whole += collector.combinedGradient().payload.array
        }
        store.apply(gradientSum: whole, batchCount: batch)
        return store
    }

    func weights(_ actions: [ShardAction]) -> [(to: [Recipient], Weights)] {
        actions.compactMap {
            switch $0 {
            case let .send(id, e): if case let .weights(w) = e.message { return ([id], w) }
            case let .broadcast(ids, e): if case let .weights(w) = e.message { return (ids, w) }
            default: break
            }
            return nil
        }
    }

    func errors(_ actions: [ShardAction]) -> [String] {
        actions.compactMap { if case let .log(.error, m, _) = $0 { return m }; return nil }
    }

    func opened() -> ParameterShard {
        var shard = ParameterShard()
        XCTAssertTrue(shard.receive(.open(jobId: "job-1", spec: spec)).isEmpty)
        return shard
    }

    // No job open: every command but `open` and `close` is refused with a log line and changes nothing.
    func testWithoutAJobCommandsAreRefused() {
        var shard = ParameterShard()
        let commands: [ShardCommand] = [.beginStep(leaves: 4), .push(node: 0..<1, part: 0, gradient: gradient(0..<1, 0)),
                                        .drop(node: 0..<1), .applyParts([0], batchSize: 8, keepPrevious: false, sendTo: [1]),
                                        .applyStep(batchSize: 8), .sendWeights(version: 0, parts: nil, to: 1),
                                        .keepBest, .restoreBest, .finish]
        for command in commands {
            let answer = shard.receive(command)
            XCTAssertEqual(errors(answer), ["shard command without an open job"], "\(command)")
            XCTAssertTrue(weights(answer).isEmpty)
            XCTAssertNil(shard.version)
        }
        XCTAssertTrue(shard.receive(.close).isEmpty)
    }

    // Open: version 0 holds the spec's initial weights; they go out whole, as one message.
    func testOpenHoldsTheInitialWeights() {
        var shard = opened()
        XCTAssertEqual(shard.version, 0)
        let sent = weights(shard.receive(.sendWeights(version: 0, parts: nil, to: 7)))
        XCTAssertEqual(sent.count, 1)
        XCTAssertEqual(sent[0].to, [7])
        XCTAssertEqual(sent[0].1.tensor.offset, 0)
        XCTAssertEqual(sent[0].1.tensor.values, spec.network.initialParameters(seed: spec.seed))
        // A version it does not hold is not sent.
        let wrong = shard.receive(.sendWeights(version: 1, parts: nil, to: 7))
        XCTAssertTrue(weights(wrong).isEmpty)
        XCTAssertEqual(errors(wrong), ["weights asked for a version the shard does not hold"])
    }

    // A step applied part by part: part 1 first (its new values go to the step's workers while the
    // version stays 0, and a worker joining now gets part 1's values of version 0), then part 0 ends
    // the step at version 1, bitwise the whole update.
    func testPartsAppliedEarlyThenTheStepEnds() {
        var shard = opened()
        let initial = spec.network.initialParameters(seed: spec.seed)
        let nodes = [0..<2, 2..<4]
        _ = shard.receive(.beginStep(leaves: 4))
        for n in nodes { _ = shard.receive(.push(node: n, part: 1, gradient: gradient(n, 1))) }
        let early = weights(shard.receive(.applyParts([1], batchSize: 8, keepPrevious: true, sendTo: [1, 2])))
        XCTAssertEqual(early.map(\.to), [[1, 2]])
        XCTAssertEqual(early.map(\.1.version), [1])
        XCTAssertEqual(early.map(\.1.tensor.indices), [ranges[1]])
        XCTAssertEqual(shard.version, 0, "the step is not over")
        let joining = weights(shard.receive(.sendWeights(version: 0, parts: nil, to: 3)))
        XCTAssertEqual(joining.map(\.1.tensor.indices), ranges)
        for (_, w) in joining {
            XCTAssertTrue(w.tensor.values.elementsEqual(initial[w.tensor.indices]) { $0.bitPattern == $1.bitPattern })
        }
        for n in nodes { _ = shard.receive(.push(node: n, part: 0, gradient: gradient(n, 0))) }
        let last = weights(shard.receive(.applyParts([0], batchSize: 8, keepPrevious: false, sendTo: [1])))
        XCTAssertEqual(last.map(\.1.tensor.indices), [ranges[0]])
        XCTAssertEqual(shard.version, 1)
        let reference = expected(nodes: nodes, leaves: 4, batch: 8)
        XCTAssertTrue(shard.job!.store.parameters.elementsEqual(reference.parameters) { $0.bitPattern == $1.bitPattern })
        XCTAssertTrue(early[0].1.tensor.values.elementsEqual(reference.parameters[ranges[1]]) { $0.bitPattern == $1.bitPattern })
    }

    // A lost worker's partial node is dropped (its applied parts stay); the chunks come back as other
    // nodes and the sum is theirs.
    func testDroppedNodeLeavesTheSum() {
        var shard = opened()
        _ = shard.receive(.beginStep(leaves: 4))
        _ = shard.receive(.push(node: 0..<2, part: 1, gradient: gradient(0..<2, 1)))
        _ = shard.receive(.drop(node: 0..<2))
        let nodes = [0..<1, 1..<2, 2..<4]
        for n in nodes {
            for l in ranges.indices { _ = shard.receive(.push(node: n, part: l, gradient: gradient(n, l))) }
        }
        _ = shard.receive(.applyParts([0, 1], batchSize: 8, keepPrevious: false, sendTo: []))
        XCTAssertEqual(shard.version, 1)
        let reference = expected(nodes: nodes, leaves: 4, batch: 8)
        XCTAssertTrue(shard.job!.store.parameters.elementsEqual(reference.parameters) { $0.bitPattern == $1.bitPattern })
    }

    // A clipped step is applied whole from the parts' tree sums.
    func testClippedStepAppliedWhole() {
        var clipped = spec
        clipped.optimizer.clipNorm = 0.5
        var shard = ParameterShard()
        _ = shard.receive(.open(jobId: "job-1", spec: clipped))
        _ = shard.receive(.beginStep(leaves: 4))
        let nodes = [0..<2, 2..<4]
        for n in nodes {
            for l in ranges.indices { _ = shard.receive(.push(node: n, part: l, gradient: gradient(n, l))) }
        }
        XCTAssertTrue(weights(shard.receive(.applyStep(batchSize: 8))).isEmpty)
        XCTAssertEqual(shard.version, 1)
        let reference = expected(nodes: nodes, leaves: 4, batch: 8, clip: 0.5)
        XCTAssertTrue(shard.job!.store.parameters.elementsEqual(reference.parameters) { $0.bitPattern == $1.bitPattern })
    }

    // The best epoch's weights are kept and restored (with their version); finishing hands the
    // parameters and their fingerprint over and closes the job.
    func testKeepRestoreAndFinish() throws {
        var shard = opened()
        func step() {
            _ = shard.receive(.beginStep(leaves: 4))
            for l in ranges.indices { _ = shard.receive(.push(node: 0..<4, part: l, gradient: gradient(0..<4, l))) }
            _ = shard.receive(.applyParts(Array(ranges.indices), batchSize: 8, keepPrevious: false, sendTo: []))
        }
        step()
        _ = shard.receive(.keepBest)
        let best = shard.job!.store.parameters
        step()
        XCTAssertEqual(shard.version, 2)
        XCTAssertNotEqual(shard.job!.store.parameters, best)
        _ = shard.receive(.restoreBest)
        XCTAssertEqual(shard.version, 1)
        XCTAssertEqual(shard.job!.store.parameters, best)
        let answer = shard.receive(.finish)
        guard case let .finished(jobId, parameters, sha)? = answer.first else { return XCTFail("no finished: \(answer)") }
        XCTAssertEqual(jobId, "job-1")
        XCTAssertEqual(parameters, best)
        XCTAssertEqual(sha, weightsSHA256(best))
        XCTAssertNil(shard.version, "the job is handed over")
        XCTAssertEqual(errors(shard.receive(.keepBest)), ["shard command without an open job"])
    }

    // Closing lets everything go, and a new job opens fresh.
    func testCloseThenOpenAgain() {
        var shard = opened()
        _ = shard.receive(.beginStep(leaves: 4))
        _ = shard.receive(.push(node: 0..<4, part: 0, gradient: gradient(0..<4, 0)))
        XCTAssertTrue(shard.receive(.close).isEmpty)
        XCTAssertNil(shard.version)
        _ = shard.receive(.open(jobId: "job-2", spec: spec))
        XCTAssertEqual(shard.version, 0)
        XCTAssertEqual(shard.job?.id, "job-2")
    }
}

/// Steps that are not finite (`training.on_non_finite`): the shard does not keep them.
extension ParameterShardTests {
    func openedShard(_ spec: JobSpec) -> ParameterShard {
        var shard = ParameterShard(keyRanges: 2)
        XCTAssertTrue(shard.receive(.open(jobId: "job-1", spec: spec)).isEmpty)
        return shard
    }

    func stepApplied(_ actions: [ShardAction]) -> [(version: Int, problem: NonFiniteStep.Value?)] {
        actions.compactMap { if case let .stepApplied(_, _, v, p) = $0 { return (v, p) }; return nil }
    }

    func bitwise(_ a: [Float], _ b: [Float]) -> Bool { a.elementsEqual(b) { $0.bitPattern == $1.bitPattern } }

    // A step whose second part's gradient holds a NaN: the first part, applied early and sent, is
    // undone (its parameters; the optimizer state is left, as training ends there), the bad part's
    // values are not sent, the shard says so with the last good version, ignores the rest of the step,
    // and still sends and hands over version 0.
    func testNaNPartUndoesTheWholeStep() {
        let spec = spec
        var shard = openedShard(spec)
        let initial = spec.network.initialParameters(seed: spec.seed)
        let nodes = [0..<2, 2..<4]
        _ = shard.receive(.beginStep(leaves: 4))
        for n in nodes { _ = shard.receive(.push(node: n, part: 1, gradient: gradient(n, 1))) }
        let early = shard.receive(.applyParts([1], batchSize: 8, keepPrevious: true, sendTo: [1]))
        XCTAssertEqual(weights(early).count, 1)
        XCTAssertTrue(stepApplied(early).isEmpty, "the step is not over")
        for n in nodes {
            var values = gradient(n, 0).array
            if n == 2..<4 { values[17] = .nan }
            _ = shard.receive(.push(node: n, part: 0, gradient: FloatData(values)))
        }
        let bad = shard.receive(.applyParts([0], batchSize: 8, keepPrevious: false, sendTo: [1]))
        XCTAssertTrue(weights(bad).isEmpty, "no values of a step that was not applied go out")
        XCTAssertEqual(stepApplied(bad).map(\.version), [0])
        XCTAssertEqual(stepApplied(bad).map(\.problem), [.gradient])
        XCTAssertEqual(shard.version, 0)
        XCTAssertTrue(bitwise(shard.job!.store.parameters, initial))
        XCTAssertEqual(shard.job!.store.optimizerState.steps, 0)
        // The rest of the step is ignored; version 0 is still served, whole, and handed over.
        XCTAssertTrue(shard.receive(.applyStep(batchSize: 8)).isEmpty)
        XCTAssertEqual(shard.version, 0)
        let sent = weights(shard.receive(.sendWeights(version: 0, parts: nil, to: 5)))
        XCTAssertTrue(bitwise(sent.flatMap(\.1.tensor.values), initial))
        guard case let .finished(_, parameters, _)? = shard.receive(.finish).first else { return XCTFail("no hand-over") }
        XCTAssertTrue(bitwise(parameters, initial))
    }

    // A finite gradient whose update overflows (SGD at 3e38): whole (clipped) and in parts, the
    // parameters are not changed and the shard names the update.
    func testOverflowingUpdateIsNotApplied() {
        for clip: Float? in [nil, 1e30] {
            var spec = spec
            spec.optimizer = OptimizerSpec(kind: .sgd, learningRate: 3e38, clipNorm: clip)
            var shard = openedShard(spec)
            let initial = spec.network.initialParameters(seed: spec.seed)
            _ = shard.receive(.beginStep(leaves: 4))
            for l in ranges.indices {
                _ = shard.receive(.push(node: 0..<4, part: l, gradient: FloatData(ranges[l].map { _ in 10 })))
            }
            let answer = clip == nil
                ? shard.receive(.applyParts(Array(ranges.indices.reversed()), batchSize: 1, keepPrevious: false, sendTo: [1]))
                : shard.receive(.applyStep(batchSize: 1))
            XCTAssertEqual(stepApplied(answer).map(\.problem), [.update], "clip \(clip ?? 0)")
            XCTAssertEqual(shard.version, 0)
            XCTAssertTrue(bitwise(shard.job!.store.parameters, initial), "clip \(clip ?? 0)")
            XCTAssertEqual(shard.job!.store.optimizerState.steps, 0)
        }
    }

    // A finite step is applied and said so with its new version; with `on_non_finite: continue` a NaN
    // gradient is applied as it is (no checks: the one way a model can hold NaN).
    func testFiniteStepsAreAppliedAndContinueAppliesAnything() {
        for policy in [NonFinitePolicy.fail, .continue] {
            var spec = spec
            spec.training.onNonFinite = policy
            var shard = openedShard(spec)
            _ = shard.receive(.beginStep(leaves: 4))
            for l in ranges.indices {
                var values = gradient(0..<4, l).array
                if policy == .continue { values[0] = .nan }
                _ = shard.receive(.push(node: 0..<4, part: l, gradient: FloatData(values)))
            }
            let answer = shard.receive(.applyParts([1, 0], batchSize: 8, keepPrevious: false, sendTo: []))
            XCTAssertEqual(stepApplied(answer).map(\.version), [1], "\(policy)")
            XCTAssertEqual(stepApplied(answer).map(\.problem), [nil], "\(policy)")
            XCTAssertEqual(shard.version, 1)
            XCTAssertEqual(shard.job!.store.parameters.contains { !$0.isFinite }, policy == .continue, "\(policy)")
        }
    }
}
