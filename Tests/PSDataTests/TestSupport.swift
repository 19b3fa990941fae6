import CZlib
import Foundation
import PSCore
import PSMath
import XCTest
@testable import PSData

/// The bundled MNIST directory, found from this file so tests run from any working directory.
let mnistDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("data/mnist")

func mnist(_ name: String) -> String { mnistDirectory.appendingPathComponent(name).path }

/// The bundled 1,000-sample MNIST slices (training and test), as a spec names them.
let smallIDX = DataFiles.idx(images: mnist("small/train-images-idx3-ubyte"), labels: mnist("small/train-labels-idx1-ubyte"))
let smallTestIDX = DataFiles.idx(images: mnist("small/t10k-images-idx3-ubyte"), labels: mnist("small/t10k-labels-idx1-ubyte"))

/// A fresh directory under the system temporary directory, removed by `tearDown`.
class TemporaryDirectoryTestCase: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("PSDataTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Writes `bytes` to `name` in the temporary directory and returns its path.
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    @discardableResult
    func write(_ name: String, text: String) throws -> String {
        try write(name, Array(text.utf8))
    }
}

func bigEndian(_ word: UInt32) -> [UInt8] {
    [UInt8(word >> 24), UInt8(word >> 16 & 0xff), UInt8(word >> 8 & 0xff), UInt8(word & 0xff)]
}

/// An IDX3 image file: header (magic, count, rows, cols) then `pixels` as given (which may be short or long).
func idx3(count: UInt32, rows: UInt32, cols: UInt32, pixels: [UInt8], magic: UInt32 = 0x0000_0803) -> [UInt8] {
    bigEndian(magic) + bigEndian(count) + bigEndian(rows) + bigEndian(cols) + pixels
}

func idx1(count: UInt32, labels: [UInt8]) -> [UInt8] {
    bigEndian(0x0000_0801) + bigEndian(count) + labels
}

/// gzip (not zlib or raw deflate) of `bytes`, written with zlib's deflate and windowBits 15 + 16.
func gzip(_ bytes: [UInt8]) -> [UInt8] {
    var stream = z_stream()
    let initialised = deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, MAX_WBITS + 16, 8,
                                    Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
    precondition(initialised == Z_OK)
    defer { deflateEnd(&stream) }
    var input = bytes
    var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(bytes.count))) + 64)
    let produced: Int = input.withUnsafeMutableBufferPointer { inBuffer in
        output.withUnsafeMutableBufferPointer { outBuffer in
            stream.next_in = inBuffer.baseAddress
            stream.avail_in = UInt32(inBuffer.count)
            stream.next_out = outBuffer.baseAddress
            stream.avail_out = UInt32(outBuffer.count)
            precondition(deflate(&stream, Z_FINISH) == Z_STREAM_END)
            return outBuffer.count - Int(stream.avail_out)
        }
    }
    return Array(output[..<produced])
}

/// A valid spec around `data` with one dense output layer of `outputs` units.
func makeSpec(_ data: DataSpec, inputs: Int = 784, outputs: Int = 10,
              loss: LossKind = .softmaxCrossEntropy, seed: UInt64 = 42) -> JobSpec {
    JobSpec(name: "test", seed: seed, data: data,
            model: ModelSpec(inputs: inputs, layers: [LayerSpec(units: outputs, activation: .linear)]),
            loss: loss, optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1),
            training: TrainingSpec(batchSize: 32, chunks: 1, epochs: 1), earlyStopping: nil)
}

/// Asserts that `body` throws a DataError whose one-line description contains every string in `parts`,
/// and returns it for further checks.
@discardableResult
func assertDataError<T>(_ body: @autoclosure () throws -> T, contains parts: [String],
                        file: StaticString = #filePath, line: UInt = #line) -> DataError? {
    do {
        _ = try body()
        XCTFail("expected a DataError containing \(parts)", file: file, line: line)
        return nil
    } catch let error as DataError {
        for part in parts where !error.description.contains(part) {
            XCTFail("'\(error.description)' does not contain '\(part)'", file: file, line: line)
        }
        return error
    } catch {
        XCTFail("expected a DataError, got \(error)", file: file, line: line)
        return nil
    }
}

func classLabels(_ targets: Targets) -> [Int32] {
    guard case let .classes(labels, _) = targets else {
        XCTFail("expected class targets, got \(targets)")
        return []
    }
    return labels
}
