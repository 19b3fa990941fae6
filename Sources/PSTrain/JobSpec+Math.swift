import PSCore
import PSMath

extension JobSpec {
    /// The network this spec describes (the spec has been validated, so the preconditions hold).
    public var network: Network {
        Network(inputs: model.inputs,
                layers: model.layers.map { Network.Layer(units: $0.units, activation: $0.activation.function,
                                                         dropout: $0.dropout) },
                loss: loss.function)
    }

    /// Whether any layer uses dropout (and so gradients depend on the dropout key).
    public var usesDropout: Bool { model.layers.contains { $0.dropout > 0 } }
}

extension Activation {
    public var function: ActivationFunction {
        switch self {
        case .sigmoid: return .sigmoid
        case .tanh: return .tanh
        case .relu: return .relu
        case .linear: return .linear
        case .softmax: return .softmax
        }
    }
}

extension LossKind {
    public var function: LossFunction {
        switch self {
        case .softmaxCrossEntropy: return .softmaxCrossEntropy
        case .binaryCrossEntropy: return .binaryCrossEntropy
        case .meanSquaredError: return .meanSquaredError
        }
    }
}

extension OptimizerSpec {
    public var config: OptimizerConfig {
        let rule: OptimizerRule
        switch kind {
        case .sgd: rule = .sgd
        case .momentum: rule = .momentum
        case .nesterov: rule = .nesterov
        case .adagrad: rule = .adagrad
        case .adadelta: rule = .adadelta
        case .rmsprop: rule = .rmsprop
        case .adam: rule = .adam
        case .adamw: rule = .adamw
        }
        return OptimizerConfig(rule: rule, learningRate: learningRate, momentum: momentum, beta1: beta1,
                               beta2: beta2, epsilon: epsilon, rho: rho, alpha: alpha, weightDecay: weightDecay)
    }
}

/// SHA-256 of the parameters as little-endian float32 bytes in layout order: the model's fingerprint.
public func weightsSHA256(_ parameters: [Float]) -> String {
    precondition(1.littleEndian == 1, "weights_sha256 is defined on little-endian bytes")
    return parameters.withUnsafeBytes { Digest.hex(Digest.sha256($0)) }
}
