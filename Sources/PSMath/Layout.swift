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

    /// Layer `l`'s weights and biases, which are contiguous: the key range a worker pushes as soon as
    /// backward has finished that layer (last layer first), and the unit a server updates.
    public func range(ofLayer l: Int) -> Range<Int> {
        layers[l].weightOffset..<(layers[l].biasOffset + layers[l].units)
    }

    /// Every layer's range, in layer order; they tile `0 ..< count`.
    public var layerRanges: [Range<Int>] { layers.indices.map(range(ofLayer:)) }

    public var outputs: Int { layers[layers.count - 1].units }
    public var widestLayer: Int { layers.map(\.units).max()! }
}
