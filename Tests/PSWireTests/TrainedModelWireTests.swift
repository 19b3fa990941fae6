import XCTest
import PSWireC
@testable import PSWire

final class TrainedModelWireTests: XCTestCase {
    func testModelWithEverySummaryOptionalPresentRoundTrips() throws {
        // Proves a model with standardisation statistics and every optional metric set round-trips.
        let model = Fixtures.model(summary: Fixtures.summaryAll)
        XCTAssertEqual(try TrainedModel(serialized: model.serialized()), model)
    }

    func testModelWithEverySummaryOptionalAbsentRoundTrips() throws {
        // Proves absent metrics stay absent (not 0) and the scale and none transforms round-trip.
        for preprocessing in [FittedPreprocessing.none, .scale(divisor: 255)] {
            let model = Fixtures.model(summary: Fixtures.summaryNone, preprocessing: preprocessing)
            let decoded = try TrainedModel(serialized: model.serialized())
            XCTAssertEqual(decoded, model)
            XCTAssertNil(decoded.summary.validationLoss)
            XCTAssertNil(decoded.summary.testMSE)
        }
    }

    func testParametersAreBitExact() throws {
        // Proves parameters survive bit for bit, NaN payloads, signed zeros, denormals and infinities included.
        let specials: [UInt32] = [0x7FC1_2345, 0xFFC0_0001, 0x7F80_0001, 0x8000_0000, 0x0000_0000,
                                  0x0000_0001, 0x807F_FFFF, 0x7F80_0000, 0xFF80_0000, 0x3F80_0000]
        var model = Fixtures.model()
        for (i, bits) in specials.enumerated() { model.parameters[i] = Float(bitPattern: bits) }
        let decoded = try TrainedModel(serialized: model.serialized())
        XCTAssertEqual(decoded.parameters.map(\.bitPattern), model.parameters.map(\.bitPattern))
        XCTAssertEqual(decoded.spec, model.spec)
    }

    func testModelRoundTripsInsideModelData() throws {
        // Proves a model sent in a ModelData frame decodes to the same model.
        let model = Fixtures.model()
        XCTAssertEqual(try Envelope(payload: payload(.modelData(model))).message, .modelData(model))
    }

    func testWriteThenReadReturnsTheModelAndLeavesNoTemporaryFile() throws {
        // Proves write(to:) and read(path:) round-trip through a file and the atomic write cleans up.
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("pswire-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/run.model"
        let model = Fixtures.model()
        try model.write(to: path)
        try Fixtures.model(summary: Fixtures.summaryNone).write(to: path)  // replaces, not appends
        XCTAssertEqual(try TrainedModel.read(path: path), Fixtures.model(summary: Fixtures.summaryNone))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["run.model"])
    }

    func testReadingAMissingFileNamesThePath() {
        // Proves a missing model file is an io WireError naming the path.
        let error = assertWireError(try TrainedModel.read(path: "/nonexistent/x.model"), names: "/nonexistent/x.model")
        XCTAssertEqual(error?.kind, .io)
    }

    func testWrongFormatStringIsRejected() {
        // Proves a file whose format is not ps-model/1 is refused, naming ModelFile.format and the value.
        let bytes = edited(Fixtures.model().serialized(), unpack: ps__v1__model_file__unpack,
                           free: ps__v1__model_file__free_unpacked) { $0.pointee.format = strdup("x") }
        let error = assertWireError(try TrainedModel(serialized: bytes), names: "ModelFile.format")
        XCTAssertEqual(error?.description, "ModelFile.format: 'x' is not ps-model/1")
    }

    func testParameterBytesNotWholeFloatsAreRejected() {
        // Proves a parameter blob of 10 bytes is reported as not a whole number of float32 values.
        let bytes = edited(Fixtures.model().serialized(), unpack: ps__v1__model_file__unpack,
                           free: ps__v1__model_file__free_unpacked) { $0.pointee.parameters.len = 10 }
        let error = assertWireError(try TrainedModel(serialized: bytes), names: "ModelFile.parameters")
        XCTAssertEqual(error?.message, "10 bytes is not a whole number of float32 values")
    }

    func testParameterCountMustMatchTheSpecLayout() {
        // Proves whole floats that do not fill the spec's layout are rejected with both counts.
        let bytes = edited(Fixtures.model().serialized(), unpack: ps__v1__model_file__unpack,
                           free: ps__v1__model_file__free_unpacked) { $0.pointee.parameters.len = 8 }
        let error = assertWireError(try TrainedModel(serialized: bytes), names: "ModelFile.parameters")
        XCTAssertEqual(error?.message, "2 values, but the spec's layout has \(Fixtures.parameterCount)")
    }

    func testStatisticsAndLayerSizesMustMatchTheSpec() {
        // Proves standardisation statistics of the wrong width and disagreeing layer_sizes are rejected.
        let narrow = edited(Fixtures.model().serialized(), unpack: ps__v1__model_file__unpack,
                            free: ps__v1__model_file__free_unpacked) {
            $0.pointee.preprocessing.pointee.standardize.pointee.n_std = 3
        }
        assertWireError(try TrainedModel(serialized: narrow), names: "ModelFile.preprocessing.standardize")
        let sizes = edited(Fixtures.model().serialized(), unpack: ps__v1__model_file__unpack,
                           free: ps__v1__model_file__free_unpacked) { $0.pointee.layer_sizes[1] = 9 }
        assertWireError(try TrainedModel(serialized: sizes), names: "ModelFile.layer_sizes")
    }

    func testMissingSubmessagesAreRejected() {
        // Proves a model file without spec, preprocessing or summary is reported by field.
        let cases: [(String, (UnsafeMutablePointer<Ps__V1__ModelFile>) -> Void)] = [
            ("ModelFile.spec: missing", { $0.pointee.spec = nil }),
            ("ModelFile.preprocessing: missing", { $0.pointee.preprocessing = nil }),
            ("ModelFile.summary: missing", { $0.pointee.summary = nil }),
            ("ModelFile.spec.training: missing", { $0.pointee.spec.pointee.training = nil }),
        ]
        for (expected, edit) in cases {
            let bytes = edited(Fixtures.model().serialized(), unpack: ps__v1__model_file__unpack,
                               free: ps__v1__model_file__free_unpacked, edit)
            assertWireError(try TrainedModel(serialized: bytes), names: expected)
        }
    }
}
