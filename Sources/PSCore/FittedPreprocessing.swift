/// The feature transform a trained model expects, with its statistics fixed at training time, so that
/// prediction and evaluation later apply exactly what training applied.
public enum FittedPreprocessing: Equatable, Sendable {
    case none
    /// x / divisor.
    case scale(divisor: Float)
    /// (x - mean[i]) / std[i], with the training split's per-feature statistics (std 0 stored as 1).
    case standardize(mean: [Float], std: [Float])

    /// Applies the transform in place to `count × width` row-major features.
    public func apply(to features: inout [Float], width: Int) {
        switch self {
        case .none:
            return
        case let .scale(divisor):
            for i in features.indices { features[i] /= divisor }
        case let .standardize(mean, std):
            precondition(mean.count == width && std.count == width, "statistics width mismatch")
            for i in features.indices {
                let j = i % width
                features[i] = (features[i] - mean[j]) / std[j]
            }
        }
    }
}
