import XCTest
import PSCore
import PSData
import PSMath
@testable import PSTrain
import PSTestSupport

/// `training.consistency` in the local trainer, the oracle of the cluster's delayed mode.
final class DelayedTrainerTests: XCTestCase {
    /// Adam (its state must only ever follow the newest version), dropout (keyed by the step), a short
    /// last batch (its own chunk layout) and two epochs (the step counts on across them).
    private func spec(_ consistency: Consistency, batchSize: Int = 150, epochs: Int = 2) -> JobSpec {
        var spec = smallMNISTSpec(optimizer: OptimizerSpec(kind: .adam, learningRate: 0.002),
                                  batchSize: batchSize, chunks: 3, epochs: epochs)
        spec.training.consistency = consistency
        spec.training.backupChunks = consistency.mode == .sync
        return spec
    }

    /// The delayed rule written out with every version kept by number: step t computes on version
    /// max(0, t − d) and the optimizer applies it to version t. Returns the last version's weights.
    private func reference(_ spec: JobSpec, data: LoadedData, delay d: Int) -> (weights: [Float], steps: Int) {
        let network = spec.network
        let train = data.train
        let batchSize = spec.training.batchSize
        let chunks = spec.training.chunks
        var store = ParameterStore(parameters: network.initialParameters(seed: spec.seed), optimizer: spec.optimizer)
        let engine = StepEngine(network: network, chunkCapacity: (batchSize + chunks - 1) / chunks)
        var versions: [Int: [Float]] = [0: store.parameters]
        var gradient = [Float](repeating: 0, count: network.parameterCount)
        let stepsPerEpoch = ChunkPlan.stepsPerEpoch(count: train.count, batchSize: batchSize)
        var t = 0
        for epoch in 0..<spec.training.epochs {
            let order = epochPermutation(seed: spec.seed, epoch: epoch, count: train.count)
            for step in 0..<stepsPerEpoch {
                XCTAssertEqual(store.version, t, "the weights' version is the global step")
                let start = step * batchSize
                let count = min(batchSize, train.count - start)
                let ranges = ChunkPlan.ranges(batchSize: count, chunks: chunks)
                let computedOn = versions[max(0, t - d)]!
                computedOn.withUnsafeBufferPointer { p in
                    order.withUnsafeBufferPointer { o in
                        gradient.withUnsafeMutableBufferPointer { g in
                            _ = engine.reduceNode(first: 0, count: chunks, totalChunks: chunks, parameters: p.baseAddress!,
                                                  dataset: train, step: t, dropoutSeed: spec.seed,
                                                  chunkIndices: { c in
                                                      UnsafeBufferPointer(rebasing: o[(start + ranges[c].lowerBound)..<(start + ranges[c].upperBound)])
                                                  },
                                                  into: g.baseAddress!)
                        }
                    }
                }
                store.apply(gradientSum: gradient, batchCount: count)
                t += 1
                versions[t] = store.parameters
            }
        }
        return (store.parameters, t)
    }

    private func assertBitwiseEqual(_ a: [Float], _ b: [Float], _ message: String, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, message, line: line)
        let first = a.indices.first { i in i >= b.count || a[i].bitPattern != b[i].bitPattern }
        XCTAssertNil(first, "\(message): first difference at \(first ?? -1): \(first.map { "\(a[$0]) vs \(b[$0])" } ?? "")",
                     line: line)
    }

    func testDelayedEqualsTheReferenceLoopBitwise() throws {
        // Proves LocalTrainer's delayed d = 1 and d = 2 are bitwise the rule written out with explicit
        // versions (gradient on version max(0, t − d), applied to version t), across an epoch boundary
        // and a short last batch, with Adam and dropout.
        let data = try DataLoader.load(spec(.sync))
        for d in [1, 2] {
            let s = spec(.delayed(d))
            let trained = LocalTrainer(spec: s, data: data).run()
            let expected = reference(s, data: data, delay: d)
            XCTAssertEqual(expected.steps, 12)
            assertBitwiseEqual(trained.model.parameters, expected.weights, "delayed d=\(d)")
            XCTAssertEqual(trained.model.summary.epochsRun, 2)
        }
        // The reference loop itself, with d = 0, is sync: it is the trainer's sync bitwise.
        assertBitwiseEqual(LocalTrainer(spec: spec(.sync), data: data).run().model.parameters,
                           reference(spec(.sync), data: data, delay: 0).weights, "sync")
    }

    func testDelayedDiffersFromSyncAndEachDelayFromTheOthers() throws {
        // Proves the delay really changes what is computed: sync, d = 1 and d = 2 give three different
        // weights, each deterministic run to run, and each still learns (test accuracy well above chance).
        let data = try DataLoader.load(spec(.sync))
        var shas: Set<String> = []
        for consistency in [Consistency.sync, .delayed(1), .delayed(2)] {
            let a = LocalTrainer(spec: spec(consistency), data: data).run()
            let b = LocalTrainer(spec: spec(consistency), data: data).run()
            XCTAssertEqual(a.weightsSHA256, b.weightsSHA256, "\(consistency) is deterministic")
            shas.insert(a.weightsSHA256)
            let accuracy = try XCTUnwrap(a.model.summary.testAccuracy)
            print("\(consistency): test accuracy \(accuracy)")
            XCTAssertGreaterThan(accuracy, 0.3, "\(consistency): 12 steps of Adam on 800 samples (chance is 0.1)")
        }
        XCTAssertEqual(shas.count, 3)
    }

    func testADelayBeyondTheRunComputesEveryStepOnTheInitialWeights() throws {
        // Proves that with d at least the number of steps every gradient is computed on version 0: one
        // epoch of 4 steps with d = ConsistencyLimits.stalenessMax equals applying, in turn, the four
        // gradients taken at the initial weights.
        let s = spec(.delayed(ConsistencyLimits.stalenessMax), batchSize: 200, epochs: 1)
        let data = try DataLoader.load(s)
        XCTAssertEqual(ChunkPlan.stepsPerEpoch(count: data.train.count, batchSize: 200), 4)
        let network = s.network
        let initial = network.initialParameters(seed: s.seed)
        var store = ParameterStore(parameters: initial, optimizer: s.optimizer)
        let engine = StepEngine(network: network, chunkCapacity: 67)
        let order = epochPermutation(seed: s.seed, epoch: 0, count: data.train.count)
        let ranges = ChunkPlan.ranges(batchSize: 200, chunks: 3)
        var gradient = [Float](repeating: 0, count: network.parameterCount)
        for step in 0..<4 {
            initial.withUnsafeBufferPointer { p in
                order.withUnsafeBufferPointer { o in
                    gradient.withUnsafeMutableBufferPointer { g in
                        _ = engine.reduceNode(first: 0, count: 3, totalChunks: 3, parameters: p.baseAddress!,
                                              dataset: data.train, step: step, dropoutSeed: s.seed,
                                              chunkIndices: { c in
                                                  UnsafeBufferPointer(rebasing: o[(step * 200 + ranges[c].lowerBound)..<(step * 200 + ranges[c].upperBound)])
                                              },
                                              into: g.baseAddress!)
                    }
                }
            }
            store.apply(gradientSum: gradient, batchCount: 200)
        }
        assertBitwiseEqual(LocalTrainer(spec: s, data: data).run().model.parameters, store.parameters, "d=8 over 4 steps")
        var d2 = s
        d2.training.consistency = .delayed(2)
        XCTAssertNotEqual(LocalTrainer(spec: d2, data: data).run().model.parameters, store.parameters,
                          "d = 2: step 3 computes on version 1")
    }

    func testSSPAndAsyncTrainAsSync() throws {
        // Proves train --local runs ssp and async as sync (staleness 0 meets any bound): the same bits.
        let data = try DataLoader.load(spec(.sync))
        let sync = LocalTrainer(spec: spec(.sync), data: data).run().weightsSHA256
        XCTAssertEqual(LocalTrainer(spec: spec(.ssp(2)), data: data).run().weightsSHA256, sync)
        XCTAssertEqual(LocalTrainer(spec: spec(.async), data: data).run().weightsSHA256, sync)
    }
}
