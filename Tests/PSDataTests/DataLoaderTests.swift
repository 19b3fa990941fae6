import Foundation
import PSCore
import PSMath
import XCTest
@testable import PSData

final class DataLoaderTests: TemporaryDirectoryTestCase {
    // Loading the IDX and CSV slices through the loader gives identical datasets.
    func testIDXAndCSVLoadIdentically() throws {
        let idx = try DataLoader.load(makeSpec(DataSpec(format: .idx, train: smallIDX, test: smallTestIDX)))
        let csv = try DataLoader.load(makeSpec(DataSpec(format: .csv, train: .csv(path: mnist("small/train.csv")),
                                                        test: .csv(path: mnist("small/test.csv")))))
        XCTAssertEqual(idx.train.count, 1000)
        XCTAssertEqual(idx.train.width, 784)
        XCTAssertEqual(idx.train.features, csv.train.features)
        XCTAssertEqual(idx.train.targets, csv.train.targets)
        XCTAssertEqual(idx.test?.features, csv.test?.features)
        XCTAssertEqual(idx.test?.targets, csv.test?.targets)
        XCTAssertNil(idx.validation)
        XCTAssertEqual(idx.preprocessing, .none)
        guard case let .classes(_, classCount) = idx.train.targets else { return XCTFail("expected classes") }
        XCTAssertEqual(classCount, 10)
    }

    // An IDX label outside 0..<outputs is reported with field, file and the label's byte offset.
    func testIDXLabelOutOfRange() throws {
        let images = try write("images", idx3(count: 4, rows: 1, cols: 2, pixels: [UInt8](repeating: 0, count: 8)))
        let labels = try write("labels", idx1(count: 4, labels: [0, 9, 1, 11]))
        let spec = makeSpec(DataSpec(format: .idx, train: .idx(images: images, labels: labels)), inputs: 2)
        let error = assertDataError(try DataLoader.load(spec), contains: [labels])
        XCTAssertEqual(error?.description, "data.train.labels: \(labels): byte 11: label 11 out of range 0..<10")
    }

    // A CSV label outside 0..<outputs is reported with field, file and line.
    func testCSVLabelOutOfRange() throws {
        let path = try write("train.csv", text: "0,1,2\n10,3,4\n")
        let spec = makeSpec(DataSpec(format: .csv, train: .csv(path: path)), inputs: 2)
        let error = assertDataError(try DataLoader.load(spec), contains: [path])
        XCTAssertEqual(error?.description, "data.train: \(path): line 2: label 10 out of range 0..<10")
        let fractional = try write("frac.csv", text: "0,1,2\n2.5,3,4\n")
        assertDataError(try DataLoader.load(makeSpec(DataSpec(format: .csv, train: .csv(path: fractional)), inputs: 2)),
                        contains: ["data.train", fractional, "line 2", "label 2.5 is not an integer class index in 0..<10"])
    }

    // Image and label files of different lengths name both files and both counts.
    func testImageLabelCountMismatch() throws {
        let images = try write("images", idx3(count: 3, rows: 1, cols: 2, pixels: [UInt8](repeating: 0, count: 6)))
        let labels = try write("labels", idx1(count: 2, labels: [0, 1]))
        let spec = makeSpec(DataSpec(format: .idx, train: .idx(images: images, labels: labels)), inputs: 2)
        let error = assertDataError(try DataLoader.load(spec), contains: [])
        XCTAssertEqual(error?.description,
                       "data.train: '\(images)' holds 3 images but '\(labels)' holds 2 labels; they must pair one to one")
    }

    // A feature width different from model.inputs is an error on model.inputs naming the file.
    func testWidthMismatch() throws {
        let path = mnist("small/train.csv")
        let error = assertDataError(try DataLoader.load(makeSpec(DataSpec(format: .csv, train: .csv(path: path)), inputs: 785)),
                                    contains: [])
        XCTAssertEqual(error?.description, "model.inputs: 785 does not match the 784 features in '\(path)'")
        let test = DataFiles.csv(path: try write("narrow.csv", text: "1,2\n"))
        assertDataError(try DataLoader.load(makeSpec(DataSpec(format: .csv, train: .csv(path: path), test: test))),
                        contains: ["model.inputs: 784 does not match the 1 features in"])
    }

    // Binary cross-entropy takes 0/1 labels as one-wide values and rejects anything else with its line.
    func testBinaryLabels() throws {
        let good = try write("good.csv", text: "0,1,2\n1,3,4\n")
        let loaded = try DataLoader.load(makeSpec(DataSpec(format: .csv, train: .csv(path: good)), inputs: 2, outputs: 1,
                                                  loss: .binaryCrossEntropy))
        XCTAssertEqual(loaded.train.targets, .values([0, 1], width: 1))
        let bad = try write("bad.csv", text: "0,1,2\n1,3,4\n2,5,6\n")
        let error = assertDataError(try DataLoader.load(makeSpec(DataSpec(format: .csv, train: .csv(path: bad)), inputs: 2,
                                                                 outputs: 1, loss: .binaryCrossEntropy)), contains: [])
        XCTAssertEqual(error?.description, "data.train: \(bad): line 3: label 2 is not 0 or 1, as binary_cross_entropy requires")
    }

    // Mean squared error with one output keeps real labels; with several it reads them as one-hot classes.
    func testMeanSquaredErrorTargets() throws {
        let path = try write("reg.csv", text: "2.5,1,2\n-1,3,4\n")
        let regression = try DataLoader.load(makeSpec(DataSpec(format: .csv, train: .csv(path: path)), inputs: 2, outputs: 1,
                                                      loss: .meanSquaredError))
        XCTAssertEqual(regression.train.targets, .values([2.5, -1], width: 1))
        let classes = try write("cls.csv", text: "2,1,2\n0,3,4\n")
        let oneHot = try DataLoader.load(makeSpec(DataSpec(format: .csv, train: .csv(path: classes)), inputs: 2, outputs: 3,
                                                  loss: .meanSquaredError))
        XCTAssertEqual(oneHot.train.targets, .classes([2, 0], classCount: 3))
        assertDataError(try DataLoader.load(makeSpec(DataSpec(format: .csv, train: .csv(path: path)), inputs: 2, outputs: 3,
                                                     loss: .meanSquaredError)),
                        contains: ["data.train", path, "line 1", "label 2.5 is not an integer class index in 0..<3",
                                   "one-hot"])
    }

    // Reader errors carry the spec field of the split and file they came from.
    func testReaderErrorsNameTheirField() throws {
        let missing = directory.appendingPathComponent("missing").path
        let spec = makeSpec(DataSpec(format: .idx, train: smallIDX,
                                     test: .idx(images: mnist("small/t10k-images-idx3-ubyte"), labels: missing)))
        assertDataError(try DataLoader.load(spec), contains: ["data.test.labels: \(missing): cannot open: No such file or directory"])
        let validation = makeSpec(DataSpec(format: .idx, train: smallIDX,
                                           validation: .idx(images: missing, labels: missing)))
        assertDataError(try DataLoader.load(validation), contains: ["data.validation.images: \(missing)"])
        let csv = makeSpec(DataSpec(format: .csv, train: .csv(path: missing)))
        assertDataError(try DataLoader.load(csv), contains: ["data.train: \(missing)"])
        let byName = makeSpec(DataSpec(format: .csv, train: .csv(path: mnist("small/train.csv")), labelColumn: .name("label")))
        assertDataError(try DataLoader.load(byName), contains: ["data.label_column: "])
    }

    // Scaling divides every split by the constant and is recorded.
    func testScale() throws {
        let spec = makeSpec(DataSpec(format: .idx, train: smallIDX, test: smallTestIDX, preprocessing: .scale(255)))
        let loaded = try DataLoader.load(spec)
        let raw = try IDXReader.readImages(path: mnist("small/train-images-idx3-ubyte"))
        XCTAssertEqual(loaded.preprocessing, .scale(divisor: 255))
        XCTAssertEqual(loaded.train.features, raw.pixels.map { $0 / 255 })
        XCTAssertEqual(loaded.test?.features.max(), 1)
    }

    // Standardisation uses statistics of the training split only (after the validation split), which
    // then has mean 0 and std 1 per non-constant feature; other splits get the same transform.
    func testStandardizeUsesTrainSplitOnly() throws {
        let spec = makeSpec(DataSpec(format: .idx, train: smallIDX, validationSplit: 0.2, test: smallTestIDX,
                                     preprocessing: .standardize))
        let loaded = try DataLoader.load(spec)
        guard case let .standardize(mean, std) = loaded.preprocessing else { return XCTFail("expected standardize") }

        let raw = try IDXReader.readImages(path: mnist("small/train-images-idx3-ubyte"))
        let split = try validationSplit(seed: spec.seed, count: 1000, fraction: 0.2)
        let width = 784
        let pixel = 14 * 28 + 14  // the centre, inked in many digits
        let trainValues = split.train.map { Double(raw.pixels[$0 * width + pixel]) }
        let expectedMean = trainValues.reduce(0, +) / Double(trainValues.count)
        let allMean = (0..<1000).map { Double(raw.pixels[$0 * width + pixel]) }.reduce(0, +) / 1000
        XCTAssertEqual(Double(mean[pixel]), expectedMean, accuracy: 1e-4)
        XCTAssertNotEqual(Double(mean[pixel]), allMean, accuracy: 1e-3, "statistics must exclude validation samples")

        for j in [pixel, 300, 500] {
            let column = (0..<loaded.train.count).map { Double(loaded.train.features[$0 * width + j]) }
            let m = column.reduce(0, +) / Double(column.count)
            let v = column.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(column.count)
            XCTAssertEqual(m, 0, accuracy: 1e-5)
            XCTAssertEqual(v.squareRoot(), 1, accuracy: 1e-4)
        }
        XCTAssertEqual(std[0], 1, "a constant (all-zero) corner pixel keeps std 1")
        XCTAssertEqual(loaded.train.features[0], 0)
        // Validation samples went through the same transform as training samples.
        let v0 = split.validation[0]
        XCTAssertEqual(loaded.validation!.features[pixel], (raw.pixels[v0 * width + pixel] - mean[pixel]) / std[pixel])
    }

    // validation_split takes the chosen samples out of training, in ascending order, with their targets.
    func testValidationSplitThroughLoader() throws {
        let spec = makeSpec(DataSpec(format: .idx, train: smallIDX, validationSplit: 0.25))
        let loaded = try DataLoader.load(spec)
        XCTAssertEqual(loaded.train.count, 750)
        XCTAssertEqual(loaded.validation?.count, 250)
        let labels = try IDXReader.readLabels(path: mnist("small/train-labels-idx1-ubyte")).map(Int32.init)
        let split = try validationSplit(seed: spec.seed, count: 1000, fraction: 0.25)
        XCTAssertEqual(classLabels(loaded.validation!.targets), split.validation.map { labels[$0] })
        XCTAssertEqual(classLabels(loaded.train.targets), split.train.map { labels[$0] })
        let tooSmall = makeSpec(DataSpec(format: .idx, train: smallIDX, validationSplit: 0.0001))
        assertDataError(try DataLoader.load(tooSmall), contains: ["data.validation_split: "])
    }

    // Separate validation files are loaded as their own split.
    func testValidationFiles() throws {
        let loaded = try DataLoader.load(makeSpec(DataSpec(format: .idx, train: smallIDX, validation: smallTestIDX)))
        XCTAssertEqual(loaded.train.count, 1000)
        XCTAssertEqual(loaded.validation?.count, 1000)
        XCTAssertEqual(Array(classLabels(loaded.validation!.targets).prefix(3)), [7, 2, 1])
        let both = makeSpec(DataSpec(format: .idx, train: smallIDX, validation: smallTestIDX, validationSplit: 0.1))
        assertDataError(try DataLoader.load(both), contains: ["data.validation_split: give data.validation files or data.validation_split, not both"])
    }

    // A scale divisor of zero would turn every feature into inf or nan, so it is refused.
    func testZeroScaleDivisorRejected() {
        let spec = makeSpec(DataSpec(format: .idx, train: smallIDX, preprocessing: .scale(0)))
        assertDataError(try DataLoader.load(spec), contains: ["data.preprocessing: scale divisor 0.0 must be finite and non-zero"])
    }

    // The full gzip MNIST loads as 60,000 × 784 with the official per-class counts, and the gzip CSV
    // gives the same samples (the CSV load time is printed: it should be a couple of seconds in release).
    func testFullMNISTIDXAndCSVAgree() throws {
        let idxSpec = makeSpec(DataSpec(format: .idx,
                                        train: .idx(images: mnist("train-images-idx3-ubyte.gz"), labels: mnist("train-labels-idx1-ubyte.gz")),
                                        test: .idx(images: mnist("t10k-images-idx3-ubyte.gz"), labels: mnist("t10k-labels-idx1-ubyte.gz"))))
        let idx = try DataLoader.load(idxSpec)
        XCTAssertEqual(idx.train.count, 60_000)
        XCTAssertEqual(idx.train.width, 784)
        XCTAssertEqual(idx.test?.count, 10_000)
        var counts = [Int](repeating: 0, count: 10)
        for label in classLabels(idx.train.targets) { counts[Int(label)] += 1 }
        XCTAssertEqual(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
        var testCounts = [Int](repeating: 0, count: 10)
        for label in classLabels(idx.test!.targets) { testCounts[Int(label)] += 1 }
        XCTAssertEqual(testCounts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])

        let start = Date()
        let csv = try CSVReader.read(path: mnist("train.csv.gz"), header: false, labelColumn: .index(0))
        let seconds = Date().timeIntervalSince(start)
        print("PSData: train.csv.gz (60,000 × 785) read in \(String(format: "%.2f", seconds)) s")
        XCTAssertEqual(csv.count, 60_000)
        XCTAssertEqual(csv.width, 784)
        XCTAssertTrue(csv.features == idx.train.features, "CSV and IDX pixels differ")
        XCTAssertEqual(csv.labels.map { Int32($0) }, classLabels(idx.train.targets))
    }
}
