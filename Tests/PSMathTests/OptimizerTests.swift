import XCTest
@testable import PSMath

/// Each optimizer against steps computed by hand from its published formula (the doc comment of
/// `OptimizerRule`). Start p = [0.5, −1, 2]; gradients g₁ = [0.2, −0.4, 1], g₂ = [0.1, 0.3, −0.5].
/// The expected values were computed in double precision; float32 must agree to 2e-6.
final class OptimizerTests: XCTestCase {
    static let start: [Float] = [0.5, -1.0, 2.0]
    static let gradients: [[Float]] = [[0.2, -0.4, 1.0], [0.1, 0.3, -0.5]]

    func run(_ config: OptimizerConfig) -> [[Float]] {
        var opt = Optimizer(config: config, count: 3)
        var p = Self.start
        var out: [[Float]] = []
        for g in Self.gradients {
            p.withUnsafeMutableBufferPointer { pp in
                g.withUnsafeBufferPointer { opt.step(parameters: pp.baseAddress!, gradient: $0.baseAddress!) }
            }
            out.append(p)
        }
        return out
    }

    func check(_ config: OptimizerConfig, _ expected: [[Double]], file: StaticString = #filePath, line: UInt = #line) {
        let got = run(config)
        for (t, (g, e)) in zip(got, expected).enumerated() {
            assertClose(g.map(Double.init), e, absolute: 2e-6, relative: 1e-6,
                        "\(config.rule) step \(t + 1)", file: file, line: line)
        }
    }

    // SGD: p − lr·g, e.g. 0.5 − 0.1·0.2 = 0.48; with L2 decay the gradient gains wd·p.
    func testSGD() {
        check(.init(rule: .sgd, learningRate: 0.1), [[0.48, -0.96, 1.9], [0.47, -0.99, 1.95]])
        check(.init(rule: .sgd, learningRate: 0.1, weightDecay: 0.01),
              [[0.4795, -0.959, 1.898], [0.4690205, -0.988041, 1.946102]])
    }

    // Momentum: the first buffer is g itself, then μ·b + g (step 2: b = 0.9·0.2 + 0.1 = 0.28, p = 0.48 − 0.028).
    func testMomentum() {
        check(.init(rule: .momentum, learningRate: 0.1, momentum: 0.9),
              [[0.48, -0.96, 1.9], [0.452, -0.954, 1.86]])
    }

    // Nesterov: the step uses g + μ·b (step 1: 0.5 − 0.1·(0.2 + 0.9·0.2) = 0.462).
    func testNesterov() {
        check(.init(rule: .nesterov, learningRate: 0.1, momentum: 0.9),
              [[0.462, -0.924, 1.81], [0.4268, -0.9486, 1.824]])
    }

    // Adagrad: lr·g/(√Σg² + ε); the first step is lr·sign(g) up to ε.
    func testAdagrad() {
        check(.init(rule: .adagrad, learningRate: 0.1, epsilon: 1e-10),
              [[0.40000000005, -0.900000000025, 1.90000000001],
               [0.3552786405200042, -0.960000000013, 1.9447213595559958]])
    }

    // Adadelta: unit-free steps √(u+ε)/√(v+ε)·g with ρ = 0.9, ε = 1e-6.
    func testAdadelta() {
        check(.init(rule: .adadelta, learningRate: 1.0, epsilon: 1e-6, rho: 0.9),
              [[0.4968381175504387, -0.9968378211563765, 1.9968377381511013],
               [0.49475333029787105, -0.9996112195439034, 1.998922868013095]])
    }

    // RMSProp without and with momentum (α = 0.99): first step lr·g/(√(0.01·g²) + ε) = 10·lr·sign(g).
    func testRMSProp() {
        check(.init(rule: .rmsprop, learningRate: 0.01, epsilon: 1e-8, alpha: 0.99),
              [[0.40000004999997507, -0.9000000249999938, 1.900000009999999],
               [0.35509874465456265, -0.960192939465586, 1.944901331474435]])
        check(.init(rule: .rmsprop, learningRate: 0.01, momentum: 0.9, epsilon: 1e-8, alpha: 0.99),
              [[0.40000004999997507, -0.9000000249999938, 1.900000009999999],
               [0.2650987896545402, -0.8701929619655805, 1.8549013404744341]])
    }

    // Adam with bias correction: the first step is lr·sign(g) up to ε; L2 decay enters the gradient.
    func testAdam() {
        check(.init(rule: .adam, learningRate: 0.001),
              [[0.49900000005, -0.999000000025, 1.99900000001],
               [0.4980678204701537, -0.9989106750201213, 1.998733662973709]])
        check(.init(rule: .adam, learningRate: 0.001, weightDecay: 0.1),
              [[0.49900000004, -0.99900000002, 1.9990000000083334],
               [0.498042596204517, -0.9986545562728967, 1.998530601244733]])
    }

    // AdamW decays the parameter directly, p·(1 − lr·wd), before the Adam step.
    func testAdamW() {
        check(.init(rule: .adamw, learningRate: 0.001, weightDecay: 0.01),
              [[0.49899500005, -0.998990000025, 1.99898000001],
               [0.49805783052015323, -0.9988906851201211, 1.998693673173709]])
    }

    // Optimizer state is exposed per named slot and survives being copied out and back (checkpoints).
    func testStateRoundTrip() {
        var a = Optimizer(config: .init(rule: .adam, learningRate: 0.01), count: 3)
        var p = Self.start
        p.withUnsafeMutableBufferPointer { pp in
            Self.gradients[0].withUnsafeBufferPointer { a.step(parameters: pp.baseAddress!, gradient: $0.baseAddress!) }
        }
        XCTAssertEqual(a.config.rule.slotNames, ["exp_avg", "exp_avg_sq"])
        XCTAssertEqual(a.slots.count, 2)
        XCTAssertEqual(a.stepCount, 1)
        var b = Optimizer(config: a.config, count: 3)
        b.slots = a.slots
        b.stepCount = a.stepCount
        var p2 = p
        p.withUnsafeMutableBufferPointer { pp in
            Self.gradients[1].withUnsafeBufferPointer { a.step(parameters: pp.baseAddress!, gradient: $0.baseAddress!) }
        }
        p2.withUnsafeMutableBufferPointer { pp in
            Self.gradients[1].withUnsafeBufferPointer { b.step(parameters: pp.baseAddress!, gradient: $0.baseAddress!) }
        }
        XCTAssertEqual(p, p2)
    }

    // Clipping follows clip_grad_norm_: a gradient of norm 5 clipped to 1 becomes g·1/(5 + 1e-6); a small one is untouched.
    func testClipping() {
        var g: [Float] = [3, 4]
        let norm = g.withUnsafeMutableBufferPointer { GradientMath.clip($0.baseAddress!, count: 2, maxNorm: 1) }
        XCTAssertEqual(norm, 5, accuracy: 1e-12)
        XCTAssertEqual(g[0], Float(3.0 / (5 + 1e-6)), accuracy: 1e-7)
        XCTAssertEqual(g[1], Float(4.0 / (5 + 1e-6)), accuracy: 1e-7)
        var small: [Float] = [0.3, 0.4]
        small.withUnsafeMutableBufferPointer { _ = GradientMath.clip($0.baseAddress!, count: 2, maxNorm: 1) }
        XCTAssertEqual(small, [0.3, 0.4])
    }

    /// The vector loops (8 lanes) and the scalar tail compute the same bits: every element of a long
    /// vector ends where a one-element optimizer (all tail) takes it, for every rule, over 3 steps.
    func testVectorLanesMatchTheScalarPath() {
        let n = 8 * 5 + 3
        let start: [Float] = (0..<n).map { Float($0 % 11) * 0.07 - 0.3 }
        let gradients: [[Float]] = (0..<3).map { t in (0..<n).map { Float(($0 * 7 + t * 5) % 13) * 0.11 - 0.6 } }
        let configs: [OptimizerConfig] = [
            .init(rule: .sgd, learningRate: 0.1, weightDecay: 0.01),
            .init(rule: .momentum, learningRate: 0.1, momentum: 0.9),
            .init(rule: .nesterov, learningRate: 0.1, momentum: 0.9, weightDecay: 0.01),
            .init(rule: .adagrad, learningRate: 0.1, epsilon: 1e-10, weightDecay: 0.01),
            .init(rule: .adadelta, learningRate: 1.0, epsilon: 1e-6, rho: 0.9, weightDecay: 0.01),
            .init(rule: .rmsprop, learningRate: 0.01, momentum: 0.9, epsilon: 1e-8, alpha: 0.99),
            .init(rule: .rmsprop, learningRate: 0.01, epsilon: 1e-8, alpha: 0.99, weightDecay: 0.01),
            .init(rule: .adam, learningRate: 0.01, weightDecay: 0.01),
            .init(rule: .adamw, learningRate: 0.01, weightDecay: 0.01),
        ]
        for config in configs {
            var whole = Optimizer(config: config, count: n)
            var p = start
            for g in gradients {
                p.withUnsafeMutableBufferPointer { pp in
                    g.withUnsafeBufferPointer { whole.step(parameters: pp.baseAddress!, gradient: $0.baseAddress!) }
                }
            }
            for i in 0..<n {
                var single = Optimizer(config: config, count: 1)
                var q = [start[i]]
                for g in gradients {
                    var gi = [g[i]]
                    q.withUnsafeMutableBufferPointer { qq in
                        gi.withUnsafeMutableBufferPointer { single.step(parameters: qq.baseAddress!, gradient: UnsafePointer($0.baseAddress!)) }
                    }
                }
                XCTAssertEqual(p[i].bitPattern, q[0].bitPattern, "\(config.rule) element \(i): \(p[i]) vs \(q[0])")
            }
            XCTAssertNotEqual(p, start, "\(config.rule) did not move")
        }
    }

    /// A step applied in parts (a server updating each layer as its gradient arrives), in any order
    /// and at any boundaries, gives bitwise the one whole step, for every rule, over 3 steps: the
    /// bias corrections count the step once, at `endStep`.
    func testStepInPartsMatchesTheWholeStep() {
        let n = 8 * 9 + 5
        let start: [Float] = (0..<n).map { Float($0 % 11) * 0.07 - 0.3 }
        let gradients: [[Float]] = (0..<3).map { t in (0..<n).map { Float(($0 * 7 + t * 5) % 13) * 0.11 - 0.6 } }
        let parts = [61..<77, 0..<3, 20..<61, 3..<20]  // uneven, unaligned, out of order
        for rule in OptimizerRule.allCases {
            let config = OptimizerConfig(rule: rule, learningRate: 0.01, momentum: 0.9, epsilon: 1e-6, rho: 0.9,
                                         weightDecay: 0.01)
            var whole = Optimizer(config: config, count: n)
            var split = Optimizer(config: config, count: n)
            var p = start
            var q = start
            for g in gradients {
                p.withUnsafeMutableBufferPointer { pp in
                    g.withUnsafeBytes { whole.step(parameters: pp.baseAddress!, gradient: $0.baseAddress!, gradientDivisor: 4) }
                }
                q.withUnsafeMutableBufferPointer { qq in
                    g.withUnsafeBytes { gg in
                        for r in parts {
                            split.stepPart(r, parameters: qq.baseAddress! + r.lowerBound,
                                           gradient: gg.baseAddress! + r.lowerBound * 4, gradientDivisor: 4)
                        }
                    }
                }
                split.endStep()
            }
            XCTAssertEqual(split.stepCount, 3)
            XCTAssertNotEqual(p, start, "\(rule) did not move")
            XCTAssertTrue(p.elementsEqual(q) { $0.bitPattern == $1.bitPattern }, "\(rule)")
            XCTAssertEqual(whole.slots, split.slots, "\(rule) state")
        }
    }
}
