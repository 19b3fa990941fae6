import Foundation
import PSCore
import XCTest
@testable import PSData

/// `DataLoader.shape` is what the server reads of a job's data: it must give `load`'s counts and
/// transform, and fail where `load` fails with the same error, without building the features.
final class DataShapeTests: TemporaryDirectoryTestCase {
    private func assertSameAsLoad(_ spec: JobSpec, _ expected: DataShape, file: StaticString = #filePath, line: UInt = #line) throws {
        let shape = try DataLoader.shape(spec)
        XCTAssertEqual(shape, DataShape(try DataLoader.load(spec)), "shape and load disagree", file: file, line: line)
        XCTAssertEqual(shape, expected, file: file, line: line)
    }

    private func assertSameError(_ spec: JobSpec, contains part: String, file: StaticString = #filePath, line: UInt = #line) {
        let loaded = assertDataError(try DataLoader.load(spec), contains: [part], file: file, line: line)
        let shaped = assertDataError(try DataLoader.shape(spec), contains: [part], file: file, line: line)
        XCTAssertEqual(shaped?.description, loaded?.description, file: file, line: line)
    }

    // Each way a job names its splits (IDX with a test set, a validation split or validation files,
    // CSV, scale, standardize, the full gzip MNIST) gives load's counts and transform.
    func testCountsAndTransformAreLoads() throws {
        try assertSameAsLoad(makeSpec(DataSpec(format: .idx, train: smallIDX, test: smallTestIDX)),
                             DataShape(trainCount: 1000, validationCount: 0, testCount: 1000, preprocessing: .none))
        try assertSameAsLoad(makeSpec(DataSpec(format: .idx, train: smallIDX, validationSplit: 0.25, preprocessing: .scale(255))),
                             DataShape(trainCount: 750, validationCount: 250, testCount: 0, preprocessing: .scale(divisor: 255)))
        try assertSameAsLoad(makeSpec(DataSpec(format: .idx, train: smallIDX, validation: smallTestIDX)),
                             DataShape(trainCount: 1000, validationCount: 1000, testCount: 0, preprocessing: .none))
        try assertSameAsLoad(makeSpec(DataSpec(format: .csv, train: .csv(path: mnist("small/train.csv")), validationSplit: 0.1)),
                             DataShape(trainCount: 900, validationCount: 100, testCount: 0, preprocessing: .none))
        let standardized = makeSpec(DataSpec(format: .idx, train: smallIDX, validationSplit: 0.2, preprocessing: .standardize))
        let shape = try DataLoader.shape(standardized)
        XCTAssertEqual(shape, DataShape(try DataLoader.load(standardized)))
        guard case .standardize = shape.preprocessing else { return XCTFail("expected standardize, got \(shape.preprocessing)") }
        let full = makeSpec(DataSpec(format: .idx,
                                     train: .idx(images: mnist("train-images-idx3-ubyte.gz"), labels: mnist("train-labels-idx1-ubyte.gz")),
                                     validationSplit: 0.1,
                                     test: .idx(images: mnist("t10k-images-idx3-ubyte.gz"), labels: mnist("t10k-labels-idx1-ubyte.gz")),
                                     preprocessing: .scale(255)))
        var start = Date()
        try assertSameAsLoad(full, DataShape(trainCount: 54000, validationCount: 6000, testCount: 10000, preprocessing: .scale(divisor: 255)))
        start = Date()
        _ = try DataLoader.shape(full)
        let shapeSeconds = Date().timeIntervalSince(start)
        start = Date()
        _ = try DataLoader.load(full)
        print("DataShapeTests: full MNIST: shape \(String(format: "%.3f", shapeSeconds)) s, load \(String(format: "%.3f", Date().timeIntervalSince(start))) s")
    }

    // Where load fails, shape fails with the same error: labels out of range, images and labels that do
    // not pair, a truncated image file, a width that is not model.inputs, a missing file, both kinds
    // of validation, a validation split too small, a zero scale divisor.
    func testErrorsAreLoads() throws {
        let images = try write("images", idx3(count: 4, rows: 1, cols: 2, pixels: [UInt8](repeating: 0, count: 8)))
        let badLabels = try write("labels", idx1(count: 4, labels: [0, 9, 1, 11]))
        assertSameError(makeSpec(DataSpec(format: .idx, train: .idx(images: images, labels: badLabels)), inputs: 2),
                        contains: "label 11 out of range 0..<10")
        let threeLabels = try write("three", idx1(count: 3, labels: [0, 1, 2]))
        assertSameError(makeSpec(DataSpec(format: .idx, train: .idx(images: images, labels: threeLabels)), inputs: 2),
                        contains: "holds 4 images but")
        let truncated = try write("truncated", Array(idx3(count: 4, rows: 1, cols: 2, pixels: [UInt8](repeating: 0, count: 8)).dropLast(3)))
        let fourLabels = try write("four", idx1(count: 4, labels: [0, 1, 2, 3]))
        assertSameError(makeSpec(DataSpec(format: .idx, train: .idx(images: truncated, labels: fourLabels)), inputs: 2),
                        contains: "data.train.images: ")
        assertSameError(makeSpec(DataSpec(format: .idx, train: .idx(images: images, labels: fourLabels)), inputs: 3),
                        contains: "model.inputs: 3 does not match")
        let missing = directory.appendingPathComponent("missing").path
        assertSameError(makeSpec(DataSpec(format: .idx, train: smallIDX, test: .idx(images: mnist("small/t10k-images-idx3-ubyte"), labels: missing))),
                        contains: "data.test.labels: \(missing): cannot open")
        assertSameError(makeSpec(DataSpec(format: .idx, train: smallIDX, validation: smallTestIDX, validationSplit: 0.1)),
                        contains: "data.validation_split: give data.validation files or data.validation_split, not both")
        assertSameError(makeSpec(DataSpec(format: .idx, train: smallIDX, validationSplit: 0.0001)), contains: "data.validation_split: ")
        assertSameError(makeSpec(DataSpec(format: .idx, train: smallIDX, preprocessing: .scale(0))),
                        contains: "data.preprocessing: scale divisor 0.0 must be finite and non-zero")
    }

    // Keeping ascending rows in place gives gathered's dataset: none, all, the first or last dropped,
    // MNIST's validation split of the small slice.
    func testKeepIsGathered() throws {
        let loaded = try DataLoader.load(makeSpec(DataSpec(format: .idx, train: smallIDX)))
        let split = try validationSplit(seed: 42, count: 1000, fraction: 0.25)
        for indices in [[], Array(0..<1000), Array(1..<1000), Array(0..<999), [3, 500, 999], split.train] {
            var kept = loaded.train
            kept.keep(ascending: indices)
            let gathered = loaded.train.gathered(indices)
            XCTAssertEqual(kept.count, indices.count)
            XCTAssertEqual(kept.features, gathered.features)
            XCTAssertEqual(kept.targets, gathered.targets)
        }
        XCTAssertEqual(loaded.train.count, 1000, "the copy kept rows, not the original")
    }
}
