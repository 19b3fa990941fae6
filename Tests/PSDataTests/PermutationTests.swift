import PSMath
import XCTest
@testable import PSData

final class PermutationTests: XCTestCase {
    // An epoch permutation contains every index exactly once and is the same on every call.
    func testEpochPermutationIsADeterministicPermutation() {
        for count in [0, 1, 2, 7, 1000] {
            let p = epochPermutation(seed: 9, epoch: 3, count: count)
            XCTAssertEqual(p.sorted(), (0..<count).map(Int32.init))
            XCTAssertEqual(p, epochPermutation(seed: 9, epoch: 3, count: count))
        }
    }

    // Different epochs and different seeds give different orders.
    func testEpochPermutationDependsOnEpochAndSeed() {
        let base = epochPermutation(seed: 1, epoch: 0, count: 1000)
        XCTAssertNotEqual(base, epochPermutation(seed: 1, epoch: 1, count: 1000))
        XCTAssertNotEqual(base, epochPermutation(seed: 2, epoch: 0, count: 1000))
        XCTAssertNotEqual(base, (0..<1000).map(Int32.init))
    }

    // The permutation is exactly the documented Fisher–Yates over Philox (epochPermutation stream),
    // so another implementation can reproduce it from the description alone.
    func testEpochPermutationMatchesDocumentedConstruction() {
        let seed: UInt64 = 0x1234_5678_9ABC_DEF0
        let epoch = 5
        var expected = Array(Int32(0)..<Int32(50))
        for i in stride(from: 49, through: 1, by: -1) {
            let word = Philox.block(key: seed, counter: (UInt32(i), RandomStream.epochPermutation.word(UInt32(epoch)), 0, 0)).0
            expected.swapAt(i, Int(Philox.below(UInt32(i + 1), word: word)))
        }
        XCTAssertEqual(epochPermutation(seed: seed, epoch: epoch, count: 50), expected)
    }

    // The validation split has the rounded size, is disjoint from and complementary to training, sorted,
    // and equals the first entries of the validationSplit-stream Fisher–Yates permutation.
    func testValidationSplitSizesAndDisjointness() throws {
        let split = try validationSplit(seed: 7, count: 1001, fraction: 0.1)
        XCTAssertEqual(split.validation.count, 100)
        XCTAssertEqual(split.train.count, 901)
        XCTAssertEqual(split.train, split.train.sorted())
        XCTAssertEqual(split.validation, split.validation.sorted())
        XCTAssertTrue(Set(split.train).isDisjoint(with: split.validation))
        XCTAssertEqual(Set(split.train).union(split.validation), Set(0..<1001))

        var order = Array(0..<1001)
        for i in stride(from: 1000, through: 1, by: -1) {
            let word = Philox.block(key: 7, counter: (UInt32(i), RandomStream.validationSplit.word(0), 0, 0)).0
            order.swapAt(i, Int(Philox.below(UInt32(i + 1), word: word)))
        }
        XCTAssertEqual(split.validation, order.prefix(100).sorted())
    }

    // The split is a pure function of the seed: repeatable, and different for another seed.
    func testValidationSplitDeterminismAndSeed() throws {
        let a = try validationSplit(seed: 7, count: 500, fraction: 0.3)
        let b = try validationSplit(seed: 7, count: 500, fraction: 0.3)
        let c = try validationSplit(seed: 8, count: 500, fraction: 0.3)
        XCTAssertEqual(a.validation, b.validation)
        XCTAssertEqual(a.train, b.train)
        XCTAssertNotEqual(a.validation, c.validation)
    }

    // A fraction that leaves either split empty, or is not in (0, 1), is an error on data.validation_split.
    func testValidationSplitRejectsEmptySplits() {
        let error = assertDataError(try validationSplit(seed: 1, count: 10, fraction: 0.01), contains: [])
        XCTAssertEqual(error?.description,
                       "data.validation_split: 0.01 of 10 samples is 0 validation samples; need 1..<10 so that both splits are non-empty")
        assertDataError(try validationSplit(seed: 1, count: 10, fraction: 0.96),
                        contains: ["data.validation_split", "is 10 validation samples; need 1..<10"])
        assertDataError(try validationSplit(seed: 1, count: 10, fraction: 1.5),
                        contains: ["data.validation_split: 1.5 is not a fraction in (0, 1)"])
        assertDataError(try validationSplit(seed: 1, count: 10, fraction: .nan), contains: ["data.validation_split"])
    }
}
