import XCTest
import PSCore
import PSData
import PSMath
@testable import PSTrain
import PSTestSupport

/// The 1,000-sample MNIST slices: a real problem small enough for unit tests.
func smallMNISTSpec(optimizer: OptimizerSpec = OptimizerSpec(kind: .sgd, learningRate: 0.1),
                    layers: [LayerSpec] = [LayerSpec(units: 32, activation: .relu, dropout: 0.2),
                                           LayerSpec(units: 10, activation: .softmax)],
                    batchSize: Int = 50, chunks: Int = 4, epochs: Int = 3,
                    earlyStopping: EarlyStoppingSpec? = nil) -> JobSpec {
    smallMNISTJob(name: "small", seed: 7, validationSplit: 0.2, layers: layers, optimizer: optimizer,
                  batchSize: batchSize, chunks: chunks, epochs: epochs, earlyStopping: earlyStopping)
}

final class TrainerTests: XCTestCase {
    // Chunks computed by different engines (as different workers would), reduced per covering node
    // and combined in tree order, give bitwise the gradient the single engine computes — with dropout.
    func testSplitAcrossWorkersIsBitwiseIdentical() throws {
        let spec = smallMNISTSpec(batchSize: 60, chunks: 6)
        let data = try DataLoader.load(spec)
        let network = spec.network
        let parameters = network.initialParameters(seed: 3)
        let order = epochPermutation(seed: spec.seed, epoch: 0, count: data.train.count)
        let ranges = ChunkPlan.ranges(batchSize: 60, chunks: 6)
        let n = network.parameterCount

        func node(_ engine: StepEngine, _ r: Range<Int>, into out: UnsafeMutablePointer<Float>) -> ChunkStats {
            parameters.withUnsafeBufferPointer { p in
                order.withUnsafeBufferPointer { o in
                    engine.reduceNode(first: r.lowerBound, count: r.count, totalChunks: 6, parameters: p.baseAddress!,
                                      dataset: data.train, step: 5, dropoutSeed: spec.seed,
                                      chunkIndices: { UnsafeBufferPointer(rebasing: o[ranges[$0]]) }, into: out)
                }
            }
        }
        var whole = [Float](repeating: 0, count: n)
        let wholeStats = whole.withUnsafeMutableBufferPointer { node(StepEngine(network: network, chunkCapacity: 10), 0..<6, into: $0.baseAddress!) }

        // Worker A holds chunks 0–2, worker B chunks 3–5: covers [0,2) [2,3) and [3,4) [4,6), received out of order.
        // Pushes arrive as views of their frames, at any alignment: every other node here is read from
        // bytes starting one past an aligned address.
        var collector = NodeCollector<FloatData>(total: 6)
        for (assignment, engine) in [(3..<6, StepEngine(network: network, chunkCapacity: 10)),
                                     (0..<3, StepEngine(network: network, chunkCapacity: 10))] {
            for r in ReductionTree.cover(first: assignment.lowerBound, count: assignment.count, total: 6).reversed() {
                var g = [Float](repeating: 0, count: n)
                let s = g.withUnsafeMutableBufferPointer { node(engine, r, into: $0.baseAddress!) }
                XCTAssertFalse(collector.isComplete)
                let payload = r.lowerBound % 2 == 0 ? FloatData(g)
                    : FloatData(viewing: ReceivedBytes(([0] + g.withUnsafeBytes { [UInt8]($0) })[1...]))
                collector.insert(r, payload: payload, stats: s)
            }
        }
        XCTAssertTrue(collector.isComplete)
        let (combined, combinedStats) = collector.combinedGradient()
        XCTAssertEqual(combinedStats, wholeStats)
        XCTAssertTrue(combined.array.elementsEqual(whole) { $0.bitPattern == $1.bitPattern }, "gradients differ in their bits")
        XCTAssertEqual(wholeStats.samples, 60)
    }

    // Training learns (small MNIST test accuracy far above chance) and two runs give the same weights.
    func testLearnsAndIsDeterministic() throws {
        let spec = smallMNISTSpec(epochs: 10)
        let data = try DataLoader.load(spec)
        var events: [EpochReport] = []
        let a = LocalTrainer(spec: spec, data: data).run { if case let .epochEnded(r) = $0 { events.append(r) } }
        let b = LocalTrainer(spec: spec, data: data).run()
        XCTAssertEqual(a.weightsSHA256, b.weightsSHA256)
        XCTAssertEqual(a.model.parameters.count, 784 * 32 + 32 + 32 * 10 + 10)
        XCTAssertEqual(events.count, 10)
        XCTAssertLessThan(events[9].trainLoss, events[0].trainLoss)
        let accuracy = try XCTUnwrap(a.model.summary.testAccuracy)
        XCTAssertGreaterThan(accuracy, 0.78, "800 training samples, 10 epochs of SGD (chance is 0.1)")
        XCTAssertEqual(a.model.summary.epochsRun, 10)
        XCTAssertEqual(a.weightsSHA256.count, 64)
    }

    // A different seed or a different chunk count changes the weights (the result really depends on them).
    func testSeedAndChunksMatter() throws {
        let base = smallMNISTSpec(epochs: 1)
        var otherSeed = base
        otherSeed.seed = 8
        let otherChunks = smallMNISTSpec(chunks: 3, epochs: 1)
        let data = try DataLoader.load(base)
        let shas = Set([base, otherSeed, otherChunks].map { LocalTrainer(spec: $0, data: data).run().weightsSHA256 })
        XCTAssertEqual(shas.count, 3)
    }

    // restore_best keeps exactly the weights a run stopped at the best epoch would have: the same bits.
    func testRestoreBestKeepsTheBestEpochsWeights() throws {
        // A learning rate high enough that validation loss gets worse after a few epochs.
        let es = EarlyStoppingSpec(monitor: .valLoss, patience: 2, minDelta: 0, restoreBest: true)
        let spec = smallMNISTSpec(optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.5), epochs: 12, earlyStopping: es)
        let data = try DataLoader.load(spec)
        let stopped = LocalTrainer(spec: spec, data: data).run()
        let best = stopped.model.summary.bestEpoch
        XCTAssertTrue(stopped.model.summary.stoppedEarly, "expected this setup to stop early")
        XCTAssertLessThan(best, stopped.model.summary.epochsRun)
        var plain = spec
        plain.earlyStopping = nil
        plain.training.epochs = best
        let reference = LocalTrainer(spec: plain, data: data).run()
        XCTAssertEqual(stopped.weightsSHA256, reference.weightsSHA256)
        XCTAssertEqual(stopped.history.last?.bestEpoch, best)
    }

    // A last batch smaller than the chunk count (so some chunks are empty) trains without trouble, and
    // its gradient is the batch mean: one chunk or three give the same update up to rounding.
    func testTinyLastBatchWithEmptyChunks() throws {
        var spec = smallMNISTSpec(batchSize: 799, chunks: 3, epochs: 1)
        spec.model.layers[0].dropout = 0
        let data = try DataLoader.load(spec)
        XCTAssertEqual(data.train.count, 800)  // steps: 799 + 1, the last batch has one sample and two empty chunks
        let three = LocalTrainer(spec: spec, data: data).run()
        var one = spec
        one.training.chunks = 1
        let single = LocalTrainer(spec: one, data: data).run()
        let diff = zip(three.model.parameters, single.model.parameters).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(diff, 1e-4)
        XCTAssertTrue(three.model.parameters.allSatisfy(\.isFinite))
    }
}

final class ParameterStoreTests: XCTestCase {
    // Splitting the parameters into key ranges, each with its own optimizer, changes no bit of the result.
    func testShardsGiveTheSameBits() {
        let start: [Float] = (0..<1_001).map { i in Float(i % 17) * 0.01 - 0.08 }
        var sums: [[Float]] = []
        for step in 0..<3 {
            sums.append((0..<1_001).map { (i: Int) -> Float in Float((i * 7 + step * 3) % 23) * 0.5 - 5 })
        }
        for spec in [OptimizerSpec(kind: .adam, learningRate: 0.01, clipNorm: 3),
                     OptimizerSpec(kind: .rmsprop, learningRate: 0.01, momentum: 0.9, epsilon: 1e-8, alpha: 0.99),
                     OptimizerSpec(kind: .nesterov, learningRate: 0.1, momentum: 0.9, weightDecay: 0.01)] {
            var results: [[Float]] = []
            for shards in [1, 2, 7] {
                var store = ParameterStore(parameters: start, optimizer: spec, shardCount: shards)
                XCTAssertEqual(store.shards.map(\.range.count).reduce(0, +), 1_001)
                for g in sums {
                    store.apply(gradientSum: g, batchCount: 32)
                }
                XCTAssertEqual(store.version, 3)
                results.append(store.parameters)
            }
            XCTAssertTrue(results.allSatisfy { $0.elementsEqual(results[0]) { $0.bitPattern == $1.bitPattern } }, "\(spec.kind)")
            XCTAssertNotEqual(results[0], start)
        }
    }

    // Applying the update in concurrent blocks (a server's --update-threads) changes no bit either,
    // for every rule: each updates an element from that element alone.
    func testUpdateThreadsGiveTheSameBits() {
        let n = 800_003  // three blocks of at least Parallel.elementsPerPartMin (262,144), and a ragged end
        let start: [Float] = (0..<n).map { i in Float(i % 19) * 0.01 - 0.09 }
        let sums: [[Float]] = (0..<3).map { step in (0..<n).map { i in Float((i * 5 + step * 11) % 29) * 0.25 - 3.5 } }
        let specs = [
            OptimizerSpec(kind: .sgd, learningRate: 0.1, weightDecay: 0.01),
            OptimizerSpec(kind: .momentum, learningRate: 0.1, momentum: 0.9),
            OptimizerSpec(kind: .nesterov, learningRate: 0.1, momentum: 0.9, weightDecay: 0.01),
            OptimizerSpec(kind: .adagrad, learningRate: 0.1, epsilon: 1e-10),
            OptimizerSpec(kind: .adadelta, learningRate: 1, epsilon: 1e-6, rho: 0.9),
            OptimizerSpec(kind: .rmsprop, learningRate: 0.01, momentum: 0.9, epsilon: 1e-8, alpha: 0.99),
            OptimizerSpec(kind: .adam, learningRate: 0.01, clipNorm: 3),
            OptimizerSpec(kind: .adamw, learningRate: 0.01, weightDecay: 0.01),
        ]
        for spec in specs {
            var results: [[Float]] = []
            for threads in [1, 2, 3, 8] {
                var store = ParameterStore(parameters: start, optimizer: spec, shardCount: threads == 3 ? 2 : 1,
                                           updateThreads: threads)
                for g in sums { store.apply(gradientSum: g, batchCount: 64) }
                results.append(store.parameters)
            }
            XCTAssertNotEqual(results[0], start, "\(spec.kind) did not move")
            for (i, r) in results.enumerated().dropFirst() {
                XCTAssertTrue(r.elementsEqual(results[0]) { $0.bitPattern == $1.bitPattern }, "\(spec.kind), variant \(i)")
            }
        }
    }

    // Without clipping the optimizer divides the sum by the batch size as it reads it; that is the same
    // division as a separate mean pass followed by the optimizer, so the same bits.
    func testFusedMeanGivesTheSameBitsAsAMeanPass() {
        let n = 1_003
        let start: [Float] = (0..<n).map { Float($0 % 13) * 0.03 - 0.2 }
        let sums: [[Float]] = (0..<3).map { t in (0..<n).map { Float(($0 * 3 + t * 7) % 17) * 0.9 - 7 } }
        for spec in [OptimizerSpec(kind: .adam, learningRate: 0.01, weightDecay: 0.001),
                     OptimizerSpec(kind: .rmsprop, learningRate: 0.01, momentum: 0.5),
                     OptimizerSpec(kind: .momentum, learningRate: 0.1, momentum: 0.9)] {
            var store = ParameterStore(parameters: start, optimizer: spec)
            var optimizer = Optimizer(config: spec.config, count: n)
            var reference = start
            for sum in sums {
                store.apply(gradientSum: sum, batchCount: 96)
                let mean = sum.map { $0 / 96 }
                reference.withUnsafeMutableBufferPointer { p in
                    mean.withUnsafeBytes { optimizer.step(parameters: p.baseAddress!, gradient: $0.baseAddress!) }
                }
            }
            XCTAssertTrue(store.parameters.elementsEqual(reference) { $0.bitPattern == $1.bitPattern }, "\(spec.kind)")
        }
    }

    // A step applied one layer at a time (in the order the layers' gradients arrive), over shard
    // boundaries that cut through layers, gives bitwise the parameters of one whole apply.
    func testApplyInPartsGivesTheSameBits() {
        let n = 1_001
        let start: [Float] = (0..<n).map { Float($0 % 13) * 0.03 - 0.2 }
        let sums: [[Float]] = (0..<3).map { t in (0..<n).map { Float(($0 * 3 + t * 7) % 17) * 0.9 - 7 } }
        let layers = [0..<700, 700..<990, 990..<1_001]
        for spec in [OptimizerSpec(kind: .adam, learningRate: 0.01, weightDecay: 0.001),
                     OptimizerSpec(kind: .adadelta, learningRate: 1, epsilon: 1e-6, rho: 0.9),
                     OptimizerSpec(kind: .nesterov, learningRate: 0.1, momentum: 0.9)] {
            var whole = ParameterStore(parameters: start, optimizer: spec)
            for sum in sums { whole.apply(gradientSum: sum, batchCount: 40) }
            for shards in [1, 2, 7] {
                var parts = ParameterStore(parameters: start, optimizer: spec, shardCount: shards)
                XCTAssertTrue(parts.appliesInParts)
                for sum in sums {
                    sum.withUnsafeBytes { g in
                        for r in layers.reversed() {
                            parts.applyPart(r, gradientSum: g.baseAddress! + r.lowerBound * 4, batchCount: 40)
                        }
                    }
                    parts.endStep()
                }
                XCTAssertEqual(parts.version, 3)
                XCTAssertTrue(parts.parameters.elementsEqual(whole.parameters) { $0.bitPattern == $1.bitPattern },
                              "\(spec.kind), \(shards) shards")
            }
        }
        XCTAssertFalse(ParameterStore(parameters: start, optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1, clipNorm: 1))
            .appliesInParts)
    }
}

final class LayerPushTests: XCTestCase {
    // A node reported range by range (as a worker pushes it): each push range is reported once, last
    // first, already holding its final bits, with the node's statistics; and the whole result is
    // bitwise that of the plain walk — for nodes of 1 to 8 chunks and a node with empty chunks.
    func testLayersAreReportedFinalAndInBackwardOrder() throws {
        // Three push ranges: 784-520, 520-520, and 520-520-10 (the last layer alone is too small).
        let spec = smallMNISTSpec(layers: [LayerSpec(units: 520, activation: .tanh), LayerSpec(units: 520, activation: .relu, dropout: 0.2),
                                           LayerSpec(units: 520, activation: .relu), LayerSpec(units: 10, activation: .softmax)],
                                  batchSize: 60, chunks: 8)
        let data = try DataLoader.load(spec)
        let network = spec.network
        let parameters = network.initialParameters(seed: 3)
        let order = epochPermutation(seed: spec.seed, epoch: 0, count: data.train.count)
        let n = network.parameterCount
        let pushRanges = network.layout.pushRanges
        let layers = network.layout.layerRanges
        XCTAssertEqual(pushRanges, [layers[0], layers[1], layers[2].lowerBound..<layers[3].upperBound])
        for (batch, total, node) in [(60, 8, 0..<8), (60, 8, 2..<4), (60, 8, 4..<8), (60, 6, 0..<6), (60, 7, 4..<7),
                                     (60, 5, 0..<5), (3, 8, 0..<8), (60, 8, 7..<8)] {
            XCTAssertTrue(ReductionTree.isNode(first: node.lowerBound, count: node.count, total: total), "\(node) of \(total)")
            let chunks = ChunkPlan.ranges(batchSize: batch, chunks: total)
            func run(_ engine: StepEngine, into out: UnsafeMutablePointer<Float>,
                     _ done: ((Range<Int>, ChunkStats) -> Void)?) -> ChunkStats {
                parameters.withUnsafeBufferPointer { p in
                    order.withUnsafeBufferPointer { o in
                        engine.reduceNode(first: node.lowerBound, count: node.count, totalChunks: total, parameters: p.baseAddress!,
                                          dataset: data.train, step: 2, dropoutSeed: spec.seed,
                                          chunkIndices: { UnsafeBufferPointer(rebasing: o[chunks[$0]]) }, into: out, rangeDone: done)
                    }
                }
            }
            var plain = [Float](repeating: 0, count: n)
            let plainStats = plain.withUnsafeMutableBufferPointer { run(StepEngine(network: network, chunkCapacity: 12), into: $0.baseAddress!, nil) }
            var layered = [Float](repeating: .nan, count: n)
            var reported: [(Range<Int>, [Float], ChunkStats)] = []
            let stats = layered.withUnsafeMutableBufferPointer { g in
                let base = g.baseAddress!
                return run(StepEngine(network: network, chunkCapacity: 12), into: base) { r, s in
                    reported.append((r, Array(UnsafeBufferPointer(start: base + r.lowerBound, count: r.count)), s))
                }
            }
            let what = "batch \(batch), node \(node) of \(total)"
            XCTAssertEqual(stats, plainStats, what)
            XCTAssertTrue(layered.elementsEqual(plain) { $0.bitPattern == $1.bitPattern }, what)
            XCTAssertEqual(reported.map(\.0), pushRanges.reversed(), what)
            for (r, values, s) in reported {
                XCTAssertTrue(values.elementsEqual(plain[r]) { $0.bitPattern == $1.bitPattern }, "\(what): \(r) changed after it was reported")
                XCTAssertEqual(s, plainStats, what)
            }
        }
    }

    // Push ranges group layers from the last one back until a group holds `pushRangeMin` parameters
    // and an eighth of them all.
    func testPushRangesGroupSmallLayers() {
        let mnist = ParameterLayout(inputs: 784, units: [256, 128, 10])
        XCTAssertEqual(mnist.pushRanges, [0..<235_146])  // 34k parameters after layer 0: not worth a push of their own
        let wide = ParameterLayout(inputs: 784, units: [1024, 1024, 10])
        XCTAssertEqual(wide.pushRanges, [0..<803_840, 803_840..<wide.count])  // 1024-1024-10 first
        XCTAssertEqual(ParameterLayout(inputs: 784, units: [10]).pushRanges, [0..<7_850])
        let deep = ParameterLayout(inputs: 10, units: [600, 600, 600, 600, 600])
        XCTAssertEqual(deep.pushRanges.map(\.count), [6_600, 360_600, 360_600, 360_600, 360_600])  // layer 0 is what is left
        XCTAssertEqual(ParameterLayout(inputs: 4, units: [1_000, 1_000, 1_000]).pushRanges.count, 3)
    }

    // The per-part collection of a step: duplicates, layers completing, a node complete once every
    // layer is in or applied, a lost worker's partial node dropped, statistics combined in tree order.
    func testStepGradientsCollectsLayers() {
        let ranges = [0..<6, 6..<9, 9..<10]
        var step = StepGradients(leaves: 4, ranges: ranges)
        XCTAssertEqual(step.parts(covering: 0..<10), [0, 1, 2])
        XCTAssertEqual(step.parts(covering: 6..<9), [1])
        XCTAssertNil(step.parts(covering: 6..<10))
        XCTAssertNil(step.parts(covering: 0..<9))
        let s = (0..<4).map { ChunkStats(lossSum: Double($0) + 0.5, correct: $0, samples: 3) }
        func values(_ node: Range<Int>, _ l: Int) -> FloatData {
            FloatData(ranges[l].map { Float($0 * 100 + node.lowerBound) })
        }
        // Node 0..<2 pushes its last layer, then node 2..<4 everything whole: layer 2 completes.
        XCTAssertEqual(step.insert(0..<2, parts: [2], stats: s[0] + s[1]) { values(0..<2, $0) },
                       .stored(completedParts: [], nodeComplete: false))
        XCTAssertEqual(step.partialStats(of: 0..<2), s[0] + s[1])
        XCTAssertEqual(step.insert(0..<2, parts: [2], stats: s[0] + s[1]) { values(0..<2, $0) }, .duplicate)
        XCTAssertEqual(step.insert(2..<4, parts: [0, 1, 2], stats: s[2] + s[3]) { values(2..<4, $0) },
                       .stored(completedParts: [2], nodeComplete: true))
        XCTAssertTrue(step.hasNode(2..<4))
        var buffers: [[Float]] = []
        XCTAssertEqual(step.combined(part: 2, reusing: &buffers).array, [Float(900 + 0) + Float(900 + 2)])
        step.markApplied(2)
        // Its worker is lost: what it pushed of 0..<2 goes, except the applied layer.
        step.dropPartial(0..<2)
        XCTAssertNil(step.partialStats(of: 0..<2))
        XCTAssertEqual(step.missing([0, 1, 2], of: 0..<1), [0, 1])
        // Reassigned as two nodes: the applied layer is a duplicate, the rest completes the step.
        XCTAssertEqual(step.insert(0..<1, parts: [2], stats: s[0]) { values(0..<1, $0) }, .duplicate)
        XCTAssertEqual(step.insert(1..<2, parts: [0, 1, 2], stats: s[1]) { values(1..<2, $0) },
                       .stored(completedParts: [], nodeComplete: true))
        XCTAssertFalse(step.isComplete)
        XCTAssertEqual(step.insert(0..<1, parts: [1], stats: s[0]) { values(0..<1, $0) },
                       .stored(completedParts: [1], nodeComplete: false))
        XCTAssertEqual(step.insert(0..<1, parts: [0], stats: s[0]) { values(0..<1, $0) },
                       .stored(completedParts: [0], nodeComplete: true))
        XCTAssertTrue(step.isComplete)
        XCTAssertEqual(Set(step.receivedNodes), [0..<1, 1..<2, 2..<4])
        XCTAssertEqual(step.stats, (s[0] + s[1]) + (s[2] + s[3]))
        XCTAssertEqual(step.combined(part: 1, reusing: &buffers).array, ranges[1].map { Float($0 * 100) + Float($0 * 100 + 1) + Float($0 * 100 + 2) })
    }
}

/// Non-finite steps (`training.on_non_finite`) in the store every trainer applies steps with, and in
/// the local trainer.
final class NonFiniteTrainingTests: XCTestCase {
    func bitwise(_ a: [Float], _ b: [Float]) -> Bool { a.elementsEqual(b) { $0.bitPattern == $1.bitPattern } }

    // A checked step with a finite result is bitwise the unchecked one. A NaN or ±inf gradient, whole
    // or in a part (where the parts applied before it go too), is not kept: the parameters and version
    // are those before it, the answer names the gradient, and the store takes no further step. An
    // update that overflows from a finite gradient (SGD at 3e38 on a gradient of 10) is named as such.
    func testCheckedStepsAreUndoneWhenNotFinite() {
        let start = (0..<1000).map { Float($0 % 13) * 0.01 - 0.06 }
        let good = (0..<1000).map { Float($0 % 7) * 0.3 - 0.9 }
        for kind in [OptimizerKind.adam, .sgd, .momentum, .adadelta, .adagrad, .rmsprop] {
            for clip: Float? in [nil, 0.5] {
                let spec = OptimizerSpec(kind: kind, learningRate: 0.01, clipNorm: clip)
                var plain = ParameterStore(parameters: start, optimizer: spec, shardCount: 3)
                var checked = plain
                plain.apply(gradientSum: good, batchCount: 4)
                XCTAssertNil(checked.applyChecked(gradientSum: FloatData(good), batchCount: 4))
                XCTAssertTrue(bitwise(plain.parameters, checked.parameters), "\(kind)")
                XCTAssertEqual(checked.version, 1)
                let before = checked.parameters
                for bad: Float in [.nan, .infinity, -.infinity] {
                    var g = good
                    g[500] = bad
                    var whole = checked
                    XCTAssertEqual(whole.applyChecked(gradientSum: FloatData(g), batchCount: 4), .gradient, "\(kind) \(bad)")
                    XCTAssertTrue(bitwise(whole.parameters, before), "\(kind) \(bad) clip \(clip ?? 0)")
                    XCTAssertEqual(whole.version, 1)
                    XCTAssertEqual(whole.optimizerState.steps, 1)
                    XCTAssertTrue(whole.rejectedStep)
                    guard clip == nil else { continue }
                    // In parts: the first part is good and applied, the second is bad; both are undone.
                    var parts = checked
                    XCTAssertNil(g.withUnsafeBytes { parts.applyPartChecked(0..<400, gradientSum: $0.baseAddress!, batchCount: 4) })
                    XCTAssertFalse(bitwise(parts.parameters, before))
                    XCTAssertEqual(g.withUnsafeBytes { parts.applyPartChecked(400..<1000, gradientSum: $0.baseAddress! + 1600, batchCount: 4) },
                                   .gradient, "\(kind) \(bad)")
                    parts.abandonStep()
                    XCTAssertTrue(bitwise(parts.parameters, before), "\(kind) \(bad)")
                    XCTAssertEqual(parts.version, 1)
                    XCTAssertTrue(parts.rejectedStep)
                }
            }
        }
        var huge = ParameterStore(parameters: start, optimizer: OptimizerSpec(kind: .sgd, learningRate: 3e38), shardCount: 2)
        var hugeParts = huge
        let ten = [Float](repeating: 10, count: 1000)
        XCTAssertEqual(huge.applyChecked(gradientSum: FloatData(ten), batchCount: 1), .update)
        XCTAssertTrue(bitwise(huge.parameters, start))
        XCTAssertEqual(huge.version, 0)
        XCTAssertEqual(huge.optimizerState.steps, 0)
        XCTAssertEqual(ten.withUnsafeBytes { hugeParts.applyPartChecked(0..<1000, gradientSum: $0.baseAddress!, batchCount: 1) }, .update)
        hugeParts.abandonStep()
        XCTAssertTrue(bitwise(hugeParts.parameters, start))
    }

    // The local trainer on a diverging job: by default it fails at the first step whose loss is not
    // finite, keeping the weights before it (finite); `stop` ends there, completed, with the same
    // weights when nothing else is kept; `continue` trains on into NaN, as before the field existed.
    func testLocalTrainerFailsStopsOrContinues() throws {
        var spec = smallMNISTSpec(epochs: 2)
        spec.optimizer.learningRate = 1e30
        let data = try DataLoader.load(spec)
        let fail = LocalTrainer(spec: spec, data: data).run()
        let step = try XCTUnwrap(fail.nonFinite)
        XCTAssertTrue(fail.failed)
        XCTAssertEqual(step.value, .loss)
        XCTAssertEqual(step.epoch, 1)
        XCTAssertEqual("\(step)", "non-finite loss at step \(step.step) (epoch 1)")
        XCTAssertTrue(fail.model.parameters.allSatisfy(\.isFinite))
        XCTAssertTrue(fail.history.isEmpty, "no epoch ended")
        XCTAssertNil(fail.model.summary.testAccuracy, "a failed run is not evaluated")

        spec.training.onNonFinite = .stop
        let stop = LocalTrainer(spec: spec, data: data).run()
        XCTAssertEqual(stop.nonFinite, step)
        XCTAssertFalse(stop.failed)
        XCTAssertEqual(stop.weightsSHA256, fail.weightsSHA256, "the last good weights")
        XCTAssertEqual(stop.history.count, 1)
        XCTAssertTrue(stop.history[0].stopEarly)
        XCTAssertTrue(stop.model.summary.stoppedEarly)
        XCTAssertNotNil(stop.model.summary.testAccuracy)

        spec.training.onNonFinite = .continue
        let carryOn = LocalTrainer(spec: spec, data: data).run()
        XCTAssertNil(carryOn.nonFinite)
        XCTAssertEqual(carryOn.history.count, 2)
        XCTAssertTrue(carryOn.model.parameters.contains { !$0.isFinite })
    }

    // After a failed step the ledger keeps the best epoch's weights when early stopping restores them
    // and an epoch was recorded (the cluster then restores the shard's best), else the current (last
    // good) ones; the failure summary has the epochs so far and the partial epoch's training loss.
    func testWeightsKeptAfterAFailure() {
        let best = EarlyStoppingSpec(monitor: .valLoss, patience: 3, restoreBest: true)
        var ledger = TrainingLedger(spec: smallMNISTSpec(earlyStopping: best))
        XCTAssertEqual(ledger.keptAfterFailure(currentVersion: 3).version, 3, "no epoch yet: the last good weights")
        XCTAssertNil(ledger.keptAfterFailure(currentVersion: 3).epoch)
        _ = ledger.endEpoch(1, train: ChunkStats(lossSum: 80, correct: 30, samples: 40),
                            validation: ChunkStats(lossSum: 5, correct: 8, samples: 10), seconds: 1,
                            parameters: [1, 2], version: 10)
        let kept = ledger.keptAfterFailure(currentVersion: 15)
        XCTAssertEqual(kept.version, 10)
        XCTAssertEqual(kept.epoch, 1)
        let summary = ledger.failureSummary(partial: ChunkStats(lossSum: 6, correct: 1, samples: 4), keptEpoch: kept.epoch,
                                            samplesPerSecond: 1)
        XCTAssertEqual(summary.epochsRun, 1)
        XCTAssertEqual(summary.trainLoss, 1.5)
        XCTAssertEqual(summary.validationLoss, 0.5)
        XCTAssertFalse(summary.stoppedEarly)
        XCTAssertNil(summary.testAccuracy)

        var plain = TrainingLedger(spec: smallMNISTSpec())
        _ = plain.endEpoch(1, train: ChunkStats(lossSum: 80, correct: 30, samples: 40),
                           validation: ChunkStats(lossSum: 5, correct: 8, samples: 10), seconds: 1,
                           parameters: [1, 2], version: 10)
        XCTAssertEqual(plain.keptAfterFailure(currentVersion: 15).version, 15, "nothing restores the best: the last good weights")
        XCTAssertNil(plain.keptAfterFailure(currentVersion: 15).epoch)
        XCTAssertEqual(plain.failureSummary(partial: ChunkStats(), keptEpoch: nil, samplesPerSecond: 1).trainLoss, 2,
                       "no step since the epoch: its training loss")
    }

    // A job that does not diverge trains to the same bits whatever the policy: the checks change nothing.
    func testChecksDoNotChangeTheBits() throws {
        var spec = smallMNISTSpec(optimizer: OptimizerSpec(kind: .adam, learningRate: 0.003), epochs: 1)
        let data = try DataLoader.load(spec)
        let checked = LocalTrainer(spec: spec, data: data).run()
        spec.training.onNonFinite = .continue
        let unchecked = LocalTrainer(spec: spec, data: data).run()
        XCTAssertNil(checked.nonFinite)
        XCTAssertEqual(checked.weightsSHA256, unchecked.weightsSHA256)
    }
}
