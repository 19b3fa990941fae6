import Foundation
import XCTest
@testable import PSMath

/// The lecture's perceptron (MIT 6.S191, lecture 1) through the project's own forward pass: a layer of
/// one sigmoid unit with weights w = [3, −2] and bias 1 (docs/TUTORIAL.md, step 1).
final class PerceptronTests: XCTestCase {
    /// One sigmoid unit over two inputs, as a spec writes it: `inputs: 2, layers: [{units: 1, activation: sigmoid}]`
    /// with binary cross-entropy (whose output layer keeps z and applies the sigmoid in the loss).
    let net = Network(inputs: 2, layers: [.init(units: 1, activation: .sigmoid)], loss: .binaryCrossEntropy)
    /// The layout of one layer: its weights `[units × fanIn]` row-major, then its biases.
    let parameters: [Float] = [3, -2, 1]

    /// z = b + w·x and ŷ = sigmoid(z) for each point, from the forward pass `Network.evaluate` runs.
    func forward(_ points: [(Float, Float)]) -> (z: [Float], y: [Float]) {
        let features = points.flatMap { [$0.0, $0.1] }
        let indices = (0..<Int32(points.count)).map { $0 }
        let ws = Workspace(network: net, capacity: points.count)
        features.withUnsafeBufferPointer { f in
            indices.withUnsafeBufferPointer { idx in
                parameters.withUnsafeBufferPointer { p in
                    let chunk = ChunkInput(features: f.baseAddress!, width: 2,
                                           targets: .values([Float](repeating: 1, count: points.count), width: 1), indices: idx)
                    _ = net.evaluate(parameters: p.baseAddress!, chunk: chunk, workspace: ws)
                }
            }
        }
        let z = Array(UnsafeBufferPointer(start: ws.a[0], count: points.count))
        return (z, ws.outputs(count: points.count))
    }

    // The lecture's worked example: x = (−1, 2) gives z = 1 + 3·(−1) + (−2)·2 = −6 and ŷ = sigmoid(−6),
    // "a very low output". A wrong sign or a missing bias gives another z (−4, 8, −7…), so this fails.
    func testLectureExample() {
        let (z, y) = forward([(-1, 2)])
        XCTAssertEqual(z, [-6])
        XCTAssertEqual(y[0], Float(1 / (1 + exp(6.0))), accuracy: Float(1e-7))  // 0.0024726…
        XCTAssertEqual(String(format: "%.6f", y[0]), "0.002473")
    }

    // The line 1 + 3x₁ − 2x₂ = 0 splits the plane: points with z < 0 get ŷ < 0.5, points with z > 0
    // get ŷ > 0.5, and points on the line get exactly 0.5.
    func testSignRuleOnEitherSideOfTheLine() {
        let below: [(Float, Float)] = [(-1, 2), (0, 1), (-3, -3), (2, 5), (0, 0.75)]     // 1 + 3x₁ − 2x₂ < 0
        let above: [(Float, Float)] = [(0, 0), (1, 1), (3, -2), (-1, -2), (0, 0.25)]      // > 0
        let on: [(Float, Float)] = [(1, 2), (-1, -1), (0, 0.5), (3, 5)]                   // = 0
        let (zBelow, yBelow) = forward(below)
        let (zAbove, yAbove) = forward(above)
        let (zOn, yOn) = forward(on)
        for (i, p) in below.enumerated() {
            XCTAssertEqual(zBelow[i], 1 + 3 * p.0 - 2 * p.1, "z at \(p)")
            XCTAssertLessThan(yBelow[i], 0.5, "\(p) lies where 1 + 3x₁ − 2x₂ < 0")
        }
        for (i, p) in above.enumerated() {
            XCTAssertEqual(zAbove[i], 1 + 3 * p.0 - 2 * p.1, "z at \(p)")
            XCTAssertGreaterThan(yAbove[i], 0.5, "\(p) lies where 1 + 3x₁ − 2x₂ > 0")
        }
        XCTAssertEqual(zOn, [0, 0, 0, 0])
        XCTAssertEqual(yOn, [0.5, 0.5, 0.5, 0.5])
    }
}
