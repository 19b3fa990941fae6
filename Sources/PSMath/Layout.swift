/// Where each layer's weights and biases live in the one flat parameter vector.
///
/// Order: layer 0 weights `[units × fanIn]` row-major, layer 0 biases `[units]`, layer 1 weights, …
/// This vector is exactly what the servers shard into key ranges and what `weights_sha256` hashes.
public struct ParameterLayout: Equatable, Sendable {
    public struct Layer: Equatable, Sendable {
        public let fanIn: Int
        public let units: Int
        /// Offset of `W[units × fanIn]`.
        public let weightOffset: Int
        /// Offset of `b[units]`.
        public let biasOffset: Int
        public var weightCount: Int { units * fanIn }
    }

    public let inputs: Int
    public let layers: [Layer]
    public let count: Int

    /// Parameters a push range holds at least (1 MiB of float32); see `pushRanges`.
    public static let pushRangeMin = 262_144

    public init(inputs: Int, units: [Int]) {
        precondition(inputs > 0 && !units.isEmpty && units.allSatisfy { $0 > 0 }, "empty layout")
        var offset = 0
        var fanIn = inputs
        var layers: [Layer] = []
        for u in units {
            layers.append(Layer(fanIn: fanIn, units: u, weightOffset: offset, biasOffset: offset + u * fanIn))
            offset += u * fanIn + u
            fanIn = u
        }
        self.inputs = inputs
        self.layers = layers
        self.count = offset
    }

    /// Layer `l`'s weights and biases, which are contiguous.
    public func range(ofLayer l: Int) -> Range<Int> {
        layers[l].weightOffset..<(layers[l].biasOffset + layers[l].units)
    }

    /// Every layer's range, in layer order; they tile `0 ..< count`.
    public var layerRanges: [Range<Int>] { layers.indices.map(range(ofLayer:)) }

    /// The key ranges a node's gradient is pushed in, in layer order (they tile `0 ..< count`), and
    /// the units a server applies as they arrive. Backward finishes the last layer first, so layers
    /// are grouped from the last one back: a group closes once it holds `pushRangeMin` parameters
    /// and an eighth of them all, and whatever is left joins layer 0's group.
    ///
    /// Sending a group early hides its transfer, sum and update behind the earlier layers' backward
    /// pass, but each extra push costs a message, an acknowledgement and a weights frame per worker
    /// (tens of microseconds of CPU each, measured on loopback). A group of a million bytes takes
    /// about 0.3 ms to cross loopback TCP alone, which repays that; the example MNIST model's
    /// 128-10 layers (34k parameters) did not (a 2-worker cluster at batch 128 ran 5% slower pushing
    /// them apart), so it pushes whole. 784-1024-1024-10 pushes its last two layers (1.06M) first.
    public var pushRanges: [Range<Int>] {
        let minimum = max(count / 8, Self.pushRangeMin)
        var groups: [Range<Int>] = []
        var end = count
        for l in layers.indices.reversed() where l > 0 {
            let start = layers[l].weightOffset
            if end - start >= minimum {
                groups.append(start..<end)
                end = start
            }
        }
        groups.append(0..<end)
        return groups.reversed()
    }

    public var outputs: Int { layers[layers.count - 1].units }
    public var widestLayer: Int { layers.map(\.units).max()! }
}
