import Foundation

/// The update rules, each following `torch.optim` (PyTorch 2.x, default flags: no `maximize`, no
/// `amsgrad`, no `centered`, `dampening = 0`, `lr_decay = 0`). `g` below is the mean gradient of the
/// batch (after clipping), `p` the parameter, `t` the 1-based step number, `wd` the weight decay.
///
/// - sgd:       g ← g + wd·p;  p ← p − lr·g
/// - momentum:  g ← g + wd·p;  b ← μ·b + g (b₁ = g);  p ← p − lr·b
/// - nesterov:  g ← g + wd·p;  b ← μ·b + g (b₁ = g);  p ← p − lr·(g + μ·b)
/// - adagrad:   g ← g + wd·p;  s ← s + g²;  p ← p − lr·g / (√s + ε)
/// - adadelta:  g ← g + wd·p;  v ← ρ·v + (1−ρ)·g²;  Δ ← √(u + ε) / √(v + ε) · g;  u ← ρ·u + (1−ρ)·Δ²;  p ← p − lr·Δ
/// - rmsprop:   g ← g + wd·p;  v ← α·v + (1−α)·g²;  d ← √v + ε;
///              μ = 0: p ← p − lr·g/d;   μ > 0: b ← μ·b + g/d;  p ← p − lr·b
/// - adam:      g ← g + wd·p;  m ← β₁·m + (1−β₁)·g;  v ← β₂·v + (1−β₂)·g²;
///              p ← p − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε)
/// - adamw:     p ← p·(1 − lr·wd), then adam with wd = 0 (Loshchilov & Hutter's decoupled decay)
public enum OptimizerRule: String, Sendable, CaseIterable {
    case sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam, adamw

    /// Names of the per-parameter state vectors this rule keeps, in checkpoint order.
    public var slotNames: [String] {
        switch self {
        case .sgd: return []
        case .momentum, .nesterov: return ["momentum_buffer"]
        case .adagrad: return ["sum"]
        case .adadelta: return ["square_avg", "acc_delta"]
        case .rmsprop: return ["square_avg", "momentum_buffer"]
        case .adam, .adamw: return ["exp_avg", "exp_avg_sq"]
        }
    }
}

public struct OptimizerConfig: Equatable, Sendable {
    public var rule: OptimizerRule
    public var learningRate: Float
    public var momentum: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var rho: Float
    public var alpha: Float
    public var weightDecay: Float

    public init(rule: OptimizerRule, learningRate: Float, momentum: Float = 0, beta1: Float = 0.9,
                beta2: Float = 0.999, epsilon: Float = 1e-8, rho: Float = 0.9, alpha: Float = 0.99,
                weightDecay: Float = 0) {
        self.rule = rule
        self.learningRate = learningRate
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.rho = rho
        self.alpha = alpha
        self.weightDecay = weightDecay
    }
}

/// An optimizer over one key range `[offset, offset + count)` of the flat parameter vector. A server
/// shard owns one per range it holds; the local trainer owns one for the whole vector. Its state
/// (`stepCount`, `slots`) is plain data so checkpoints can save and restore it.
public struct Optimizer: Sendable {
    public let config: OptimizerConfig
    public let count: Int
    /// Updates applied so far (Adam's `t` before the next step is `stepCount + 1`).
    public var stepCount: Int
    /// The state vectors, two stored properties (not an array of arrays) so that a step mutates them
    /// in place: an outer array would make every step copy them.
    private var slot0: [Float]
    private var slot1: [Float]

    /// One vector of `count` floats per `config.rule.slotNames` entry (for checkpoints).
    public var slots: [[Float]] {
        get { Array([slot0, slot1].prefix(config.rule.slotNames.count)) }
        set {
            precondition(newValue.count == config.rule.slotNames.count && newValue.allSatisfy { $0.count == count },
                         "optimizer state has the wrong shape")
            slot0 = newValue.count > 0 ? newValue[0] : []
            slot1 = newValue.count > 1 ? newValue[1] : []
        }
    }

    public init(config: OptimizerConfig, count: Int) {
        self.config = config
        self.count = count
        stepCount = 0
        let n = config.rule.slotNames.count
        slot0 = n > 0 ? [Float](repeating: 0, count: count) : []
        slot1 = n > 1 ? [Float](repeating: 0, count: count) : []
    }

    /// Applies one update. `gradient` is the batch's mean gradient for this range; it is read, not kept.
    ///
    /// Each rule is one branch-free loop over raw pointers so the compiler vectorises it: this runs
    /// over every parameter every step, on the server's critical path.
    ///
    /// `threads` > 1 splits the vector into that many blocks updated concurrently (a server applying a
    /// step while its workers wait); every rule is element-wise, so the result is bitwise the same.
    ///
    /// `gradientDivisor`: the gradient is `gradient[i] / gradientDivisor` (a sum over the batch and the
    /// batch size, the same division the separate mean pass does, so the same bits), read as raw
    /// float32 of any alignment (a push read in place from its frame).
    public mutating func step(parameters: UnsafeMutablePointer<Float>, gradient: UnsafeRawPointer, gradientDivisor: Float = 1,
                              threads: Int = 1) {
        stepPart(0..<count, parameters: parameters, gradient: gradient, gradientDivisor: gradientDivisor, threads: threads)
        endStep()
    }

    /// Applies the coming update to elements `range` only: `parameters` and `gradient` point at
    /// element `range.lowerBound`. A step may be applied in parts, in any order, as its gradient
    /// arrives (a server updating one layer while the next is still on its way); once every element
    /// has had its part, `endStep()` counts the step. Every rule is element-wise and the step's
    /// scalars (Adam's bias corrections) depend only on the step number, so the parts give bitwise
    /// the parameters one `step` gives.
    public mutating func stepPart(_ range: Range<Int>, parameters: UnsafeMutablePointer<Float>, gradient: UnsafeRawPointer,
                                  gradientDivisor: Float = 1, threads: Int = 1) {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "part \(range) outside 0..<\(count)")
        let c = config
        let lr = c.learningRate
        let wd = c.weightDecay
        let first = stepCount == 0
        let t = Double(stepCount + 1)
        let base = range.lowerBound * MemoryLayout<Float>.stride
        slot0.withUnsafeMutableBufferPointer { sa in
            slot1.withUnsafeMutableBufferPointer { sb in
                // Addresses as integers: the blocks run on other threads, each on its own elements.
                let (pa, ga) = (Int(bitPattern: parameters), Int(bitPattern: gradient))
                let (s0a, s1a) = (Int(bitPattern: sa.baseAddress), Int(bitPattern: sb.baseAddress))
                Parallel.blocks(range.count, parts: threads) { offset, n in
                    let stride = offset * MemoryLayout<Float>.stride
                    let p = UnsafeMutablePointer<Float>(bitPattern: pa + stride)!
                    let g = UnsafeRawPointer(bitPattern: ga + stride)!
                    let s0 = UnsafeMutablePointer<Float>(bitPattern: s0a == 0 ? 0 : s0a + base + stride)
                    let s1 = UnsafeMutablePointer<Float>(bitPattern: s1a == 0 ? 0 : s1a + base + stride)
                    Self.update(c, p, g, gradientDivisor, s0, s1, n, lr: lr, wd: wd, first: first, t: t)
                }
            }
        }
    }

    /// Counts one update whose parts `stepPart` has applied to every element.
    public mutating func endStep() {
        stepCount += 1
    }

    /// One rule over `n` elements.
    private static func update(_ c: OptimizerConfig, _ p: UnsafeMutablePointer<Float>, _ g: UnsafeRawPointer, _ d: Float,
                               _ s0: UnsafeMutablePointer<Float>?, _ s1: UnsafeMutablePointer<Float>?, _ n: Int,
                               lr: Float, wd: Float, first: Bool, t: Double) {
        switch c.rule {
        case .sgd:
            Self.sgd(p, g, d, n, lr, wd)
        case .momentum, .nesterov:
            Self.momentum(p, g, d, s0!, n, lr, wd, c.momentum, nesterov: c.rule == .nesterov, first: first)
        case .adagrad:
            Self.adagrad(p, g, d, s0!, n, lr, wd, c.epsilon)
        case .adadelta:
            Self.adadelta(p, g, d, s0!, s1!, n, lr, wd, c.rho, c.epsilon)
        case .rmsprop:
            Self.rmsprop(p, g, d, s0!, s1!, n, lr, wd, c.alpha, c.epsilon, c.momentum)
        case .adam, .adamw:
            // Bias corrections in double, as PyTorch computes them from a Python float.
            let stepSize = Float(Double(lr) / (1 - pow(Double(c.beta1), t)))
            let correction2 = Float((1 - pow(Double(c.beta2), t)).squareRoot())
            if c.rule == .adamw {
                let decay = 1 - lr * wd
                forEachBlock(n, vector: { i in store(load(p, i) * decay, p, i) }, scalar: { i in p[i] *= decay })
            }
            Self.adam(p, g, d, s0!, s1!, n, c.rule == .adamw ? 0 : wd, c.beta1, c.beta2, c.epsilon, stepSize, correction2)
        }
    }

    @inline(__always)
    static func sgd(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeRawPointer, _ d: Float, _ n: Int, _ lr: Float, _ wd: Float) {
        forEachBlock(n, vector: { i in
            let pi = load(p, i)
            store(pi - lr * (load(g, i) / d + wd * pi), p, i)
        }, scalar: { i in
            p[i] -= lr * (loadScalar(g, i) / d + wd * p[i])
        })
    }

    @inline(__always)
    static func momentum(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeRawPointer, _ d: Float, _ b: UnsafeMutablePointer<Float>,
                         _ n: Int, _ lr: Float, _ wd: Float, _ mu: Float, nesterov: Bool, first: Bool) {
        // The first buffer is the gradient itself (b₁ = g), as torch.optim.SGD does.
        let keep: Float = first ? 0 : mu
        // nesterov steps by g + μ·b, plain momentum by b.
        let bScale: Float = nesterov ? mu : 1
        forEachBlock(n, vector: { i in
            let pi = load(p, i)
            let gi = load(g, i) / d + wd * pi
            let buf = keep * load(b, i) + gi
            store(buf, b, i)
            store(pi - lr * (nesterov ? gi + bScale * buf : buf), p, i)
        }, scalar: { i in
            let gi = loadScalar(g, i) / d + wd * p[i]
            let buf = keep * b[i] + gi
            b[i] = buf
            p[i] -= lr * (nesterov ? gi + bScale * buf : buf)
        })
    }

    @inline(__always)
    static func adagrad(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeRawPointer, _ d: Float, _ s: UnsafeMutablePointer<Float>,
                        _ n: Int, _ lr: Float, _ wd: Float, _ eps: Float) {
        forEachBlock(n, vector: { i in
            let pi = load(p, i)
            let gi = load(g, i) / d + wd * pi
            let si = load(s, i) + gi * gi
            store(si, s, i)
            store(pi - lr * gi / (squareRoot(si) + eps), p, i)
        }, scalar: { i in
            let gi = loadScalar(g, i) / d + wd * p[i]
            let si = s[i] + gi * gi
            s[i] = si
            p[i] -= lr * gi / (si.squareRoot() + eps)
        })
    }

    @inline(__always)
    static func adadelta(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeRawPointer, _ d: Float, _ v: UnsafeMutablePointer<Float>,
                         _ u: UnsafeMutablePointer<Float>, _ n: Int, _ lr: Float, _ wd: Float, _ rho: Float, _ eps: Float) {
        let keep = 1 - rho
        forEachBlock(n, vector: { i in
            let pi = load(p, i)
            let gi = load(g, i) / d + wd * pi
            let vi = rho * load(v, i) + keep * gi * gi
            store(vi, v, i)
            let ui = load(u, i)
            let delta = squareRoot(ui + eps) / squareRoot(vi + eps) * gi
            store(rho * ui + keep * delta * delta, u, i)
            store(pi - lr * delta, p, i)
        }, scalar: { i in
            let gi = loadScalar(g, i) / d + wd * p[i]
            let vi = rho * v[i] + keep * gi * gi
            v[i] = vi
            let delta = (u[i] + eps).squareRoot() / (vi + eps).squareRoot() * gi
            u[i] = rho * u[i] + keep * delta * delta
            p[i] -= lr * delta
        })
    }

    @inline(__always)
    static func rmsprop(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeRawPointer, _ d: Float, _ v: UnsafeMutablePointer<Float>,
                        _ b: UnsafeMutablePointer<Float>, _ n: Int, _ lr: Float, _ wd: Float, _ alpha: Float,
                        _ eps: Float, _ mu: Float) {
        let keep = 1 - alpha
        if mu > 0 {
            forEachBlock(n, vector: { i in
                let pi = load(p, i)
                let gi = load(g, i) / d + wd * pi
                let vi = alpha * load(v, i) + keep * gi * gi
                store(vi, v, i)
                let bi = mu * load(b, i) + gi / (squareRoot(vi) + eps)
                store(bi, b, i)
                store(pi - lr * bi, p, i)
            }, scalar: { i in
                let gi = loadScalar(g, i) / d + wd * p[i]
                let vi = alpha * v[i] + keep * gi * gi
                v[i] = vi
                let bi = mu * b[i] + gi / (vi.squareRoot() + eps)
                b[i] = bi
                p[i] -= lr * bi
            })
        } else {
            forEachBlock(n, vector: { i in
                let pi = load(p, i)
                let gi = load(g, i) / d + wd * pi
                let vi = alpha * load(v, i) + keep * gi * gi
                store(vi, v, i)
                store(pi - lr * gi / (squareRoot(vi) + eps), p, i)
            }, scalar: { i in
                let gi = loadScalar(g, i) / d + wd * p[i]
                let vi = alpha * v[i] + keep * gi * gi
                v[i] = vi
                p[i] -= lr * gi / (vi.squareRoot() + eps)
            })
        }
    }

    @inline(__always)
    static func adam(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeRawPointer, _ d: Float, _ m: UnsafeMutablePointer<Float>,
                     _ v: UnsafeMutablePointer<Float>, _ n: Int, _ wd: Float, _ b1: Float, _ b2: Float, _ eps: Float,
                     _ stepSize: Float, _ correction2: Float) {
        let keep1 = 1 - b1
        let keep2 = 1 - b2
        forEachBlock(n, vector: { i in
            let pi = load(p, i)
            let gi = load(g, i) / d + wd * pi
            let mi = b1 * load(m, i) + keep1 * gi
            let vi = b2 * load(v, i) + keep2 * gi * gi
            store(mi, m, i)
            store(vi, v, i)
            store(pi - stepSize * mi / (squareRoot(vi) / correction2 + eps), p, i)
        }, scalar: { i in
            let gi = loadScalar(g, i) / d + wd * p[i]
            let mi = b1 * m[i] + keep1 * gi
            let vi = b2 * v[i] + keep2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] -= stepSize * mi / (vi.squareRoot() / correction2 + eps)
        })
    }
}

/// Mean of a gradient sum over a batch, and optional clipping to a maximum L2 norm.
public enum GradientMath {
    /// g[i] ← sum[i] / batchSize, in place.
    public static func mean(_ g: UnsafeMutablePointer<Float>, count: Int, batchSize: Int) {
        mean(UnsafePointer(g), into: g, count: count, batchSize: batchSize)
    }

    /// out[i] ← sum[i] / batchSize. `sum` is raw so that it can be a gradient read in place from a
    /// received frame (little-endian float32, any alignment). `threads` as for `Optimizer.step`.
    public static func mean(_ sum: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>, count: Int, batchSize: Int,
                            threads: Int = 1) {
        let divisor = Float(batchSize)
        let (sa, oa) = (Int(bitPattern: sum), Int(bitPattern: out))
        Parallel.blocks(count, parts: threads) { offset, n in
            let sum = UnsafeRawPointer(bitPattern: sa + offset * MemoryLayout<Float>.stride)!
            let out = UnsafeMutablePointer<Float>(bitPattern: oa + offset * MemoryLayout<Float>.stride)!
            forEachBlock(n, vector: { i in store(load(sum, i) / divisor, out, i) }, scalar: { i in out[i] = loadScalar(sum, i) / divisor })
        }
    }

    /// Squared L2 norm accumulated in double, in index order.
    public static func squaredNorm(_ g: UnsafePointer<Float>, count: Int) -> Double {
        var s = 0.0
        for i in 0..<count { s += Double(g[i]) * Double(g[i]) }
        return s
    }

    /// `torch.nn.utils.clip_grad_norm_`: scale by maxNorm / (norm + 1e-6) when that is below 1.
    /// Returns the norm before clipping.
    @discardableResult
    public static func clip(_ g: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float) -> Double {
        let norm = squaredNorm(g, count: count).squareRoot()
        let coefficient = Float(Double(maxNorm) / (norm + 1e-6))
        if coefficient < 1 {
            for i in 0..<count { g[i] *= coefficient }
        }
        return norm
    }
}

/// Element-wise `a += b` for reduction trees.
public enum VectorMath {
    public static func add(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        forEachBlock(count, vector: { i in store(load(a, i) + load(b, i), a, i) }, scalar: { i in a[i] += b[i] })
    }

    /// `target[range] = source[range]`, one memory copy.
    public static func copy(_ range: Range<Int>, from source: [Float], to target: inout [Float]) {
        source.withUnsafeBufferPointer { s in
            target.withUnsafeMutableBufferPointer { t in
                (t.baseAddress! + range.lowerBound).update(from: s.baseAddress! + range.lowerBound, count: range.count)
            }
        }
    }

    /// Whether every one of `count` float32 values (raw: a gradient read in place from a frame, any
    /// alignment) is finite. One read pass: the largest exponent field is all ones only for NaN or ±inf
    /// (an integer max, which the compiler vectorises; aligned data is read as such).
    public static func allFinite(_ values: UnsafeRawPointer, count: Int) -> Bool {
        let exponent: UInt32 = 0x7F80_0000
        var largest: UInt32 = 0
        if Int(bitPattern: values) % MemoryLayout<UInt32>.alignment == 0 {
            let words = values.assumingMemoryBound(to: UInt32.self)
            for i in 0..<count { largest = max(largest, words[i] & exponent) }
        } else {
            for i in 0..<count {
                largest = max(largest, values.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) & exponent)
            }
        }
        return largest != exponent
    }

    /// `out = a + b`, element-wise (the same sums as `add`, into a third buffer). The inputs are raw
    /// so that they can be gradients read in place from received frames (float32, any alignment).
    public static func sum(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>, count: Int) {
        forEachBlock(count, vector: { i in store(load(a, i) + load(b, i), out, i) },
                     scalar: { i in out[i] = loadScalar(a, i) + loadScalar(b, i) })
    }
}
