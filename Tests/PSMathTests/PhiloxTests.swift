import XCTest
@testable import PSMath

final class PhiloxTests: XCTestCase {
    // Philox4x32-10 reproduces the known-answer vectors published with Random123 (kat_vectors).
    func testKnownAnswers() {
        func check(_ key: UInt64, _ c: Philox.Block, _ e: Philox.Block, line: UInt = #line) {
            let b = Philox.block(key: key, counter: c)
            XCTAssertEqual([b.0, b.1, b.2, b.3], [e.0, e.1, e.2, e.3], line: line)
        }
        check(0, (0, 0, 0, 0), (0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8))
        check(0xffff_ffff_ffff_ffff, (0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff),
              (0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd))
        check(0x299f_31d0_a409_3822, (0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344),
              (0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1))
    }

    // Dropout masks depend on every key component and keep about 1 − rate of the units.
    func testDropoutMaskKeysAndRate() {
        var mask = [Float](repeating: -1, count: 10_000)
        mask.withUnsafeMutableBufferPointer {
            Dropout.fillMask(seed: 1, step: 2, sample: 3, layer: 0, rate: 0.2, units: 10_000, into: $0.baseAddress!)
        }
        let kept = mask.filter { $0 != 0 }.count
        XCTAssertEqual(Double(kept) / 10_000, 0.8, accuracy: 0.02)
        XCTAssertTrue(mask.allSatisfy { $0 == 0 || $0 == 1 / Float(0.8) })
        for u in [0, 1, 2, 3, 4, 5, 9_999] {
            XCTAssertEqual(mask[u] != 0, Dropout.keeps(seed: 1, step: 2, sample: 3, layer: 0, unit: u, rate: 0.2))
        }
        func pattern(seed: UInt64 = 1, step: Int = 2, sample: Int = 3, layer: Int = 0) -> [Bool] {
            (0..<64).map { Dropout.keeps(seed: seed, step: step, sample: sample, layer: layer, unit: $0, rate: 0.5) }
        }
        let base = pattern()
        XCTAssertEqual(base, pattern())
        XCTAssertNotEqual(base, pattern(seed: 2))
        XCTAssertNotEqual(base, pattern(step: 3))
        XCTAssertNotEqual(base, pattern(sample: 4))
        XCTAssertNotEqual(base, pattern(layer: 1))
    }

    // Initialisation is a pure function of the seed, within the He or Glorot bound, with zero biases.
    func testInitialisation() {
        let net = Network(inputs: 784, layers: [.init(units: 256, activation: .relu),
                                                .init(units: 10, activation: .softmax)], loss: .softmaxCrossEntropy)
        let a = net.initialParameters(seed: 42)
        XCTAssertEqual(a, net.initialParameters(seed: 42))
        XCTAssertNotEqual(a, net.initialParameters(seed: 43))
        let l0 = net.layout.layers[0], l1 = net.layout.layers[1]
        let he = Float((6.0 / 784).squareRoot()), glorot = Float((6.0 / 266).squareRoot())
        XCTAssertTrue(a[l0.weightOffset..<l0.biasOffset].allSatisfy { abs($0) <= he })
        XCTAssertTrue(a[l1.weightOffset..<l1.biasOffset].allSatisfy { abs($0) <= glorot })
        XCTAssertTrue(a[l0.biasOffset..<(l0.biasOffset + 256)].allSatisfy { $0 == 0 })
        XCTAssertGreaterThan(a[l0.weightOffset..<l0.biasOffset].map { abs($0) }.max()!, he * 0.99)
        XCTAssertEqual(net.parameterCount, 784 * 256 + 256 + 256 * 10 + 10)
    }
}
