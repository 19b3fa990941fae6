import XCTest
@testable import PSMath

/// Gradient checks: the analytic chunk gradient (float32, OpenBLAS) against central finite
/// differences of an independent double-precision reference forward pass.
///
/// Tolerance: |analytic − numeric| ≤ 2e-4 + 2e-3·|numeric| per element, with step h = 1e-5 in double.
/// The analytic side is float32, whose rounding (~1e-7 relative per operation, a few hundred
/// operations deep) stays well inside this; a wrong formula misses it by orders of magnitude.
final class GradientCheckTests: XCTestCase {
    static let hidden: [ActivationFunction] = [.sigmoid, .tanh, .relu, .linear]

    /// Output layers paired with each loss, including MSE against one-hot classes.
    static let outputs: [(name: String, activation: ActivationFunction, units: Int, loss: LossFunction, classes: Bool)] = [
        ("softmax+CE", .softmax, 3, .softmaxCrossEntropy, true),
        ("sigmoid+BCE", .sigmoid, 1, .binaryCrossEntropy, false),
        ("linear+MSE", .linear, 2, .meanSquaredError, false),
        ("sigmoid+MSE", .sigmoid, 2, .meanSquaredError, false),
        ("tanh+MSE", .tanh, 2, .meanSquaredError, false),
        ("relu+MSE", .relu, 2, .meanSquaredError, false),
        ("linear+MSE(one-hot)", .linear, 3, .meanSquaredError, true),
    ]

    // Every hidden activation × every output/loss pair, with and without dropout, agrees with finite differences.
    func testEveryActivationAndLossPairMatchesFiniteDifferences() {
        for act in Self.hidden {
            for out in Self.outputs {
                for dropout: Float in [0, 0.3] {
                    let context = "\(act) hidden, \(out.name), dropout \(dropout)"
                    let net = Network(inputs: 5, layers: [
                        .init(units: 7, activation: act, dropout: dropout),
                        .init(units: 6, activation: act, dropout: dropout / 2),
                        .init(units: out.units, activation: out.activation),
                    ], loss: out.loss)
                    checkGradient(net, classes: out.classes, context: context)
                }
            }
        }
    }

    // A single-layer network (no hidden layer) also backpropagates correctly into its only weights.
    func testSingleLayerNetwork() {
        let net = Network(inputs: 4, layers: [.init(units: 3, activation: .softmax)], loss: .softmaxCrossEntropy)
        checkGradient(net, classes: true, context: "single layer")
    }

    // The float loss sum agrees with the double reference, so the chunk statistics are right too.
    func testLossSumMatchesReference() {
        let net = Network(inputs: 5, layers: [.init(units: 8, activation: .tanh, dropout: 0.25),
                                              .init(units: 3, activation: .softmax)], loss: .softmaxCrossEntropy)
        let fixture = Fixture(net: net, classes: true, samples: 6, seed: 11)
        let (stats, _) = fixture.analytic()
        let reference = fixture.referenceLoss(fixture.parameters.map(Double.init))
        XCTAssertEqual(stats.lossSum, reference, accuracy: 1e-5 * max(1, abs(reference)))
        XCTAssertEqual(stats.samples, 6)
    }

    func checkGradient(_ net: Network, classes: Bool, context: String, file: StaticString = #filePath, line: UInt = #line) {
        let fixture = Fixture(net: net, classes: classes, samples: 5, seed: 3)
        let (_, analytic) = fixture.analytic()
        var params = fixture.parameters.map(Double.init)
        var numeric = [Double](repeating: 0, count: params.count)
        let h = 1e-5
        for i in params.indices {
            let saved = params[i]
            params[i] = saved + h
            let up = fixture.referenceLoss(params)
            params[i] = saved - h
            let down = fixture.referenceLoss(params)
            params[i] = saved
            numeric[i] = (up - down) / (2 * h)
        }
        assertClose(analytic.map(Double.init), numeric, absolute: 2e-4, relative: 2e-3, context, file: file, line: line)
    }
}

/// A small deterministic problem: parameters, inputs, targets and the dropout key.
struct Fixture {
    let net: Network
    let classes: Bool
    let parameters: [Float]
    let features: [Float]
    let targets: Targets
    let indices: [Int32]
    let seed: UInt64 = 99
    let step = 7

    init(net: Network, classes: Bool, samples: Int, seed: UInt64) {
        self.net = net
        self.classes = classes
        var rng = SplitMix(seed)
        // Perturb the initial parameters so biases are non-zero and ReLUs sit away from their kink.
        parameters = net.initialParameters(seed: seed).map { $0 + Float(rng.uniform(-0.3, 0.3)) }
        // Dataset of 2·samples rows; the chunk takes every other row to exercise the gather.
        let rows = samples * 2
        features = (0..<(rows * net.inputs)).map { _ in Float(rng.uniform(-1.5, 1.5)) }
        if classes {
            targets = .classes((0..<rows).map { _ in Int32(rng.below(net.outputs)) }, classCount: net.outputs)
        } else if net.loss == .binaryCrossEntropy {
            targets = .values((0..<rows).map { _ in Float(rng.below(2)) }, width: 1)
        } else {
            targets = .values((0..<(rows * net.outputs)).map { _ in Float(rng.uniform(-0.9, 0.9)) }, width: net.outputs)
        }
        indices = (0..<samples).map { Int32(2 * $0 + 1) }
    }

    func analytic() -> (ChunkStats, [Float]) {
        let ws = Workspace(network: net, capacity: indices.count)
        var gradient = [Float](repeating: .nan, count: net.parameterCount)
        let stats = features.withUnsafeBufferPointer { f in
            indices.withUnsafeBufferPointer { idx in
                parameters.withUnsafeBufferPointer { p in
                    gradient.withUnsafeMutableBufferPointer { g in
                        net.gradientSum(parameters: p.baseAddress!,
                                        chunk: ChunkInput(features: f.baseAddress!, width: net.inputs,
                                                          targets: targets, indices: idx),
                                        dropoutSeed: seed, step: step, gradient: g.baseAddress!, workspace: ws)
                    }
                }
            }
        }
        return (stats, gradient)
    }

    /// Sum over the chunk of per-sample losses, in double, written from the definitions.
    func referenceLoss(_ p: [Double]) -> Double {
        var total = 0.0
        for index in indices.map(Int.init) {
            var x = (0..<net.inputs).map { Double(features[index * net.inputs + $0]) }
            for (l, layer) in net.layout.layers.enumerated() {
                var z = [Double](repeating: 0, count: layer.units)
                for u in 0..<layer.units {
                    var s = p[layer.biasOffset + u]
                    for j in 0..<layer.fanIn { s += p[layer.weightOffset + u * layer.fanIn + j] * x[j] }
                    z[u] = s
                }
                let isLast = l == net.layers.count - 1
                let act = net.layers[l].activation
                var a = z
                if !(isLast && net.loss != .meanSquaredError) {
                    a = z.map { reference(act, $0) }
                }
                let rate = net.layers[l].dropout
                if rate > 0 {
                    for u in 0..<layer.units {
                        let kept = Dropout.keeps(seed: seed, step: step, sample: index, layer: l, unit: u, rate: rate)
                        a[u] = kept ? a[u] / (1 - Double(rate)) : 0
                    }
                }
                x = a
            }
            let k = net.outputs
            switch net.loss {
            case .softmaxCrossEntropy:
                guard case let .classes(labels, _) = targets else { fatalError() }
                let m = x.max()!
                let lse = m + log(x.map { exp($0 - m) }.reduce(0, +))
                total += lse - x[Int(labels[index])]
            case .binaryCrossEntropy:
                guard case let .values(values, _) = targets else { fatalError() }
                let prob = 1 / (1 + exp(-x[0]))
                let t = Double(values[index])
                total += -(t * log(prob) + (1 - t) * log(1 - prob))
            case .meanSquaredError:
                var s = 0.0
                for j in 0..<k {
                    let t: Double
                    switch targets {
                    case let .classes(labels, _): t = Int(labels[index]) == j ? 1 : 0
                    case let .values(values, width): t = Double(values[index * width + j])
                    }
                    s += (x[j] - t) * (x[j] - t)
                }
                total += s / Double(k)
            }
        }
        return total
    }

    func reference(_ f: ActivationFunction, _ z: Double) -> Double {
        switch f {
        case .sigmoid: return 1 / (1 + exp(-z))
        case .tanh: return tanh(z)
        case .relu: return max(z, 0)
        case .linear, .softmax: return z
        }
    }
}

/// A tiny deterministic generator for test fixtures (not the product's RNG).
struct SplitMix {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform(_ lo: Double, _ hi: Double) -> Double {
        lo + (hi - lo) * Double(next() >> 11) / Double(1 << 53)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Fails with the first few mismatching elements, their values and the allowed difference.
func assertClose(_ actual: [Double], _ expected: [Double], absolute: Double, relative: Double,
                 _ context: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(context): length", file: file, line: line)
    var failures: [String] = []
    for i in 0..<min(actual.count, expected.count) {
        let allowed = absolute + relative * abs(expected[i])
        if !(abs(actual[i] - expected[i]) <= allowed) {
            failures.append("[\(i)] actual \(actual[i]) expected \(expected[i]) (allowed ±\(allowed))")
        }
    }
    if !failures.isEmpty {
        XCTFail("\(context): \(failures.count) of \(actual.count) elements differ; first: "
                + failures.prefix(5).joined(separator: "; "), file: file, line: line)
    }
}
