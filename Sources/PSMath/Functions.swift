/// Activation functions. `softmax` is only ever an output, fused with the cross-entropy loss.
public enum ActivationFunction: Sendable, Equatable {
    case sigmoid, tanh, relu, linear, softmax
}

/// Loss functions. Every per-sample loss is a mean over output units, so a batch's mean loss equals
/// PyTorch's `reduction="mean"` for the same targets.
public enum LossFunction: Sendable, Equatable {
    /// Softmax over the output then −log p[label]; gradient w.r.t. logits is p − onehot.
    case softmaxCrossEntropy
    /// Sigmoid output; −(t log p + (1−t) log(1−p)) computed from logits without overflow.
    case binaryCrossEntropy
    /// (1/k) Σ (a − t)² over the k outputs.
    case meanSquaredError
}

import Foundation

@inline(__always) func logistic(_ x: Float) -> Float {
    // Split by sign so exp never overflows and tiny results keep their precision.
    if x >= 0 {
        return 1 / (1 + Foundation.exp(-x))
    }
    let e = Foundation.exp(x)
    return e / (1 + e)
}

extension ActivationFunction {
    /// Applies the activation in place to `n × units` values (softmax is applied by the loss).
    @inline(__always)
    func apply(_ z: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .linear, .softmax:
            return
        case .relu:
            for i in 0..<count { z[i] = max(z[i], 0) }
        case .sigmoid:
            for i in 0..<count { z[i] = logistic(z[i]) }
        case .tanh:
            for i in 0..<count { z[i] = Foundation.tanh(z[i]) }
        }
    }

    /// Multiplies `grad` (dL/da) in place by da/dz, written in terms of the activation's output `a`.
    @inline(__always)
    func backward(output a: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .linear, .softmax:
            return
        case .relu:
            for i in 0..<count { grad[i] = a[i] > 0 ? grad[i] : 0 }
        case .sigmoid:
            for i in 0..<count { grad[i] *= a[i] * (1 - a[i]) }
        case .tanh:
            for i in 0..<count { grad[i] *= 1 - a[i] * a[i] }
        }
    }
}
