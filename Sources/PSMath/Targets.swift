/// What the loss compares the network's output with, one entry per sample.
public enum Targets: Equatable, Sendable {
    /// Class indices in `0..<classCount` (softmax cross-entropy; mean squared error against one-hot).
    case classes([Int32], classCount: Int)
    /// Real targets, `count × width` row-major (binary cross-entropy: width 1, values 0 or 1;
    /// mean squared error: width = output units).
    case values([Float], width: Int)

    public var count: Int {
        switch self {
        case let .classes(labels, _): return labels.count
        case let .values(values, width): return width == 0 ? 0 : values.count / width
        }
    }

    /// The targets of the samples at `indices`, in that order.
    public func gathered(_ indices: some Collection<Int>) -> Targets {
        switch self {
        case let .classes(labels, classCount):
            return .classes(indices.map { labels[$0] }, classCount: classCount)
        case let .values(values, width):
            var out = [Float]()
            out.reserveCapacity(indices.count * width)
            for i in indices { out.append(contentsOf: values[(i * width)..<((i + 1) * width)]) }
            return .values(out, width: width)
        }
    }
}
