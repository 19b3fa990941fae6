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
    /// One vector of `count` floats per `config.rule.slotNames` entry.
    public var slots: [[Float]]

    public init(config: OptimizerConfig, count: Int) {
        self.config = config
        self.count = count
        stepCount = 0
        slots = config.rule.slotNames.map { _ in [Float](repeating: 0, count: count) }
    }

    /// Applies one update. `gradient` is the batch's mean gradient for this range; it is read, not kept.
    public mutating func step(parameters p: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>) {
        stepCount += 1
        let c = config
        let n = count
        let lr = c.learningRate
        let wd = c.weightDecay
        let first = stepCount == 1
        switch c.rule {
        case .sgd:
            for i in 0..<n {
                let g = gradient[i] + wd * p[i]
                p[i] -= lr * g
            }
        case .momentum, .nesterov:
            let mu = c.momentum
            let nesterov = c.rule == .nesterov
            slots[0].withUnsafeMutableBufferPointer { b in
                for i in 0..<n {
                    let g = gradient[i] + wd * p[i]
                    let buf = first ? g : mu * b[i] + g
                    b[i] = buf
                    p[i] -= lr * (nesterov ? g + mu * buf : buf)
                }
            }
        case .adagrad:
            let eps = c.epsilon
            slots[0].withUnsafeMutableBufferPointer { s in
                for i in 0..<n {
                    let g = gradient[i] + wd * p[i]
                    s[i] += g * g
                    p[i] -= lr * g / (s[i].squareRoot() + eps)
                }
            }
        case .adadelta:
            let rho = c.rho
            let eps = c.epsilon
            withTwoSlots { v, u in
                for i in 0..<n {
                    let g = gradient[i] + wd * p[i]
                    v[i] = rho * v[i] + (1 - rho) * g * g
                    let delta = (u[i] + eps).squareRoot() / (v[i] + eps).squareRoot() * g
                    u[i] = rho * u[i] + (1 - rho) * delta * delta
                    p[i] -= lr * delta
                }
            }
        case .rmsprop:
            let alpha = c.alpha
            let eps = c.epsilon
            let mu = c.momentum
            withTwoSlots { v, b in
                for i in 0..<n {
                    let g = gradient[i] + wd * p[i]
                    v[i] = alpha * v[i] + (1 - alpha) * g * g
                    let d = v[i].squareRoot() + eps
                    if mu > 0 {
                        b[i] = mu * b[i] + g / d
                        p[i] -= lr * b[i]
                    } else {
                        p[i] -= lr * g / d
                    }
                }
            }
        case .adam, .adamw:
            let b1 = c.beta1
            let b2 = c.beta2
            let eps = c.epsilon
            let t = Double(stepCount)
            // Bias corrections in double, as PyTorch computes them from a Python float.
            let stepSize = Float(Double(lr) / (1 - pow(Double(b1), t)))
            let correction2 = Float((1 - pow(Double(b2), t)).squareRoot())
            let decoupled = c.rule == .adamw
            let coupledDecay: Float = decoupled ? 0 : wd
            let decay: Float = decoupled ? 1 - lr * wd : 1
            withTwoSlots { m, v in
                for i in 0..<n {
                    if decoupled { p[i] *= decay }
                    let g = gradient[i] + coupledDecay * p[i]
                    m[i] = b1 * m[i] + (1 - b1) * g
                    v[i] = b2 * v[i] + (1 - b2) * g * g
                    p[i] -= stepSize * m[i] / (v[i].squareRoot() / correction2 + eps)
                }
            }
        }
    }

    private mutating func withTwoSlots(_ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        var a = slots[0]
        var b = slots[1]
        slots = []  // hand the storage over so the closures mutate without copying
        a.withUnsafeMutableBufferPointer { pa in
            b.withUnsafeMutableBufferPointer { pb in body(pa.baseAddress!, pb.baseAddress!) }
        }
        slots = [a, b]
    }
}

/// Mean of a gradient sum over a batch, and optional clipping to a maximum L2 norm.
public enum GradientMath {
    /// g[i] ← sum[i] / batchSize, in place.
    public static func mean(_ g: UnsafeMutablePointer<Float>, count: Int, batchSize: Int) {
        let divisor = Float(batchSize)
        for i in 0..<count { g[i] /= divisor }
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
        for i in 0..<count { a[i] += b[i] }
    }
}
