import XCTest
@testable import PSCore

final class ReductionTreeTests: XCTestCase {
    // The tree's shape is the documented one: split at the largest power of two below the count.
    func testShape() {
        func shape(_ n: Int) -> String {
            ReductionTree.reduce((0..<n).map { "c\($0)" }) { "(\($0)+\($1))" }
        }
        XCTAssertEqual(shape(1), "c0")
        XCTAssertEqual(shape(2), "(c0+c1)")
        XCTAssertEqual(shape(3), "((c0+c1)+c2)")
        XCTAssertEqual(shape(4), "((c0+c1)+(c2+c3))")
        XCTAssertEqual(shape(6), "(((c0+c1)+(c2+c3))+(c4+c5))")
        XCTAssertEqual(shape(7), "(((c0+c1)+(c2+c3))+((c4+c5)+c6))")
    }

    // isNode accepts exactly the ranges that appear as nodes in the tree, for every size up to 40.
    func testIsNodeMatchesTheTree() {
        for total in 1...40 {
            var nodes = Set<[Int]>()
            func collect(_ lo: Int, _ n: Int) {
                nodes.insert([lo, n])
                if n > 1 {
                    let l = ReductionTree.leftCount(n)
                    collect(lo, l)
                    collect(lo + l, n - l)
                }
            }
            collect(0, total)
            for first in 0..<total {
                for count in 1...(total - first) {
                    XCTAssertEqual(ReductionTree.isNode(first: first, count: count, total: total),
                                   nodes.contains([first, count]), "total \(total) range \(first)+\(count)")
                }
            }
            XCTAssertFalse(ReductionTree.isNode(first: 0, count: 0, total: total))
            XCTAssertFalse(ReductionTree.isNode(first: total, count: 1, total: total))
        }
    }

    // cover() returns the fewest nodes that tile a consecutive assignment, each a real node.
    func testCover() {
        XCTAssertEqual(ReductionTree.cover(first: 0, count: 8, total: 8), [0..<8])
        XCTAssertEqual(ReductionTree.cover(first: 2, count: 4, total: 8), [2..<4, 4..<6])
        XCTAssertEqual(ReductionTree.cover(first: 0, count: 3, total: 6), [0..<2, 2..<3])
        XCTAssertEqual(ReductionTree.cover(first: 4, count: 2, total: 6), [4..<6])
        XCTAssertEqual(ReductionTree.cover(first: 1, count: 0, total: 6), [])
        for total in 1...20 {
            for first in 0..<total {
                for count in 0...(total - first) {
                    let nodes = ReductionTree.cover(first: first, count: count, total: total)
                    XCTAssertEqual(nodes.map(\.count).reduce(0, +), count)
                    XCTAssertEqual(nodes.first?.lowerBound ?? first, first)
                    for (a, b) in zip(nodes, nodes.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
                    for n in nodes { XCTAssertTrue(ReductionTree.isNode(first: n.lowerBound, count: n.count, total: total)) }
                }
            }
        }
    }

    // Reducing the covers of a split assignment, then combining them in tree order, equals the whole
    // reduction: the property that lets workers pre-reduce their own chunks.
    func testPartialReductionsCombineToTheWhole() {
        for total in 1...16 {
            let leaves = (0..<total).map { "c\($0)" }
            let whole = ReductionTree.reduce(leaves) { "(\($0)+\($1))" }
            // Each cover node of [0, total) split at every point reduces on its own; combining the
            // node results through the tree walk must reproduce `whole`.
            for cut in 0...total {
                var partial: [Range<Int>: String] = [:]
                for node in ReductionTree.cover(first: 0, count: cut, total: total)
                    + ReductionTree.cover(first: cut, count: total - cut, total: total) {
                    partial[node] = ReductionTree.reduce(Array(leaves[node])) { "(\($0)+\($1))" }
                }
                func combine(_ lo: Int, _ n: Int) -> String {
                    if let done = partial[lo..<(lo + n)] { return done }
                    let l = ReductionTree.leftCount(n)
                    return "(\(combine(lo, l))+\(combine(lo + l, n - l)))"
                }
                XCTAssertEqual(combine(0, total), whole, "total \(total) cut \(cut)")
            }
        }
    }

    // Chunks split a batch as evenly as possible, earlier chunks first, and may be empty only for tiny batches.
    func testChunkPlan() {
        XCTAssertEqual(ChunkPlan.ranges(batchSize: 128, chunks: 4), [0..<32, 32..<64, 64..<96, 96..<128])
        XCTAssertEqual(ChunkPlan.ranges(batchSize: 10, chunks: 4), [0..<3, 3..<6, 6..<8, 8..<10])
        XCTAssertEqual(ChunkPlan.ranges(batchSize: 2, chunks: 3), [0..<1, 1..<2, 2..<2])
        XCTAssertEqual(ChunkPlan.stepsPerEpoch(count: 54_000, batchSize: 128), 422)
        XCTAssertEqual(ChunkPlan.evaluationRanges(count: 2_500), [0..<1000, 1000..<2000, 2000..<2500])
        XCTAssertEqual(ChunkPlan.evaluationRanges(count: 0), [])
    }
}

final class EarlyStopperTests: XCTestCase {
    // val_loss: stops after `patience` epochs without an improvement larger than min_delta, remembering the best.
    func testLossPatience() {
        var s = EarlyStopper(spec: .init(monitor: .valLoss, patience: 2, minDelta: 0.01))
        XCTAssertEqual(s.observe(epoch: 1, value: 1.0), .init(improved: true, stop: false))
        XCTAssertEqual(s.observe(epoch: 2, value: 0.5), .init(improved: true, stop: false))
        XCTAssertEqual(s.observe(epoch: 3, value: 0.495), .init(improved: false, stop: false))  // within min_delta
        XCTAssertEqual(s.observe(epoch: 4, value: 0.6), .init(improved: false, stop: true))
        XCTAssertEqual(s.bestEpoch, 2)
        XCTAssertEqual(s.best, 0.5)
    }

    // An improvement resets the patience counter.
    func testImprovementResetsWait() {
        var s = EarlyStopper(spec: .init(monitor: .valLoss, patience: 2))
        _ = s.observe(epoch: 1, value: 1.0)
        XCTAssertFalse(s.observe(epoch: 2, value: 1.1).stop)
        XCTAssertTrue(s.observe(epoch: 3, value: 0.9).improved)
        XCTAssertFalse(s.observe(epoch: 4, value: 1.0).stop)
        XCTAssertTrue(s.observe(epoch: 5, value: 1.0).stop)
        XCTAssertEqual(s.bestEpoch, 3)
    }

    // val_accuracy is maximised; patience 0 stops at the first epoch that does not improve; NaN never improves.
    func testAccuracyAndZeroPatienceAndNaN() {
        var s = EarlyStopper(spec: .init(monitor: .valAccuracy, patience: 0))
        XCTAssertTrue(s.observe(epoch: 1, value: 0.9).improved)
        XCTAssertTrue(s.observe(epoch: 2, value: 0.95).improved)
        XCTAssertEqual(s.observe(epoch: 3, value: 0.95), .init(improved: false, stop: true))
        var n = EarlyStopper(spec: .init(monitor: .valLoss, patience: 1))
        XCTAssertFalse(n.observe(epoch: 1, value: .nan).improved)
        XCTAssertTrue(n.observe(epoch: 2, value: 3).improved)
        XCTAssertTrue(n.observe(epoch: 3, value: .nan).stop)
    }
}
