import PSCore
import PSMath

/// The gradient pushes of one synchronous step, collected per layer.
///
/// A worker pushes each node of the reduction tree either whole or one layer's key range at a time
/// (last layer first, as backward finishes them). Each layer's range has its own `NodeCollector`; a
/// layer is complete once its nodes cover every chunk, and the server can then sum and apply that
/// layer while the earlier layers are still on their way. A node counts as received once each of its
/// layers has been received or applied, and the step's statistics (carried whole by every push of a
/// node) combine over received nodes in tree order.
///
/// Pure data: the coordinator checks who may push what; this type keeps what arrived and says what
/// is complete.
public struct StepGradients {
    /// Each layer's key range, in layer order; they tile the parameter vector.
    public let ranges: [Range<Int>]
    /// Per layer, the nodes received for it (dropped once the layer has been applied).
    public private(set) var layers: [NodeCollector<FloatData>]
    /// Layers already summed and applied; later pushes for them are duplicates.
    public private(set) var applied: [Bool]
    /// Nodes with every layer in, and their statistics.
    public private(set) var received: NodeCollector<Void>
    /// Nodes with some layers in: their statistics (checked equal on every push) and which layers.
    public private(set) var partial: [Range<Int>: (stats: ChunkStats, layers: Set<Int>)] = [:]

    public init(leaves: Int, ranges: [Range<Int>]) {
        precondition(!ranges.isEmpty, "no layers")
        self.ranges = ranges
        layers = ranges.map { _ in NodeCollector(total: leaves) }
        applied = ranges.map { _ in false }
        received = NodeCollector(total: leaves)
    }

    public var leaves: Int { received.total }
    public var parameterCount: Int { ranges.last!.upperBound }
    /// Every node received: the step's statistics are complete and every layer is complete or applied.
    public var isComplete: Bool { received.isComplete }
    /// Nodes whose every layer is in.
    public var receivedNodes: [Range<Int>] { Array(received.nodes.keys) }

    /// The layers a push of `range` (a gradient's key range) carries: all of them for the whole
    /// vector, one for exactly one layer's range, nil for anything else.
    public func layers(covering range: Range<Int>) -> [Int]? {
        if range == 0..<parameterCount { return Array(ranges.indices) }
        if let l = ranges.firstIndex(of: range) { return [l] }
        return nil
    }

    /// Whether `node` has every layer received or applied.
    public func hasNode(_ node: Range<Int>) -> Bool { received.contains(node) }

    /// Of `layers`, those `node` still needs (not received for it, layer not applied).
    public func missing(_ layers: [Int], of node: Range<Int>) -> [Int] {
        layers.filter { !applied[$0] && !(partial[node]?.layers.contains($0) ?? false) }
    }

    /// The statistics an earlier push of `node` reported, if some of its layers are in.
    public func partialStats(of node: Range<Int>) -> ChunkStats? { partial[node]?.stats }

    public enum Insertion: Equatable {
        /// Nothing new: every layer of the push is already in or applied.
        case duplicate
        /// Stored. `completedLayers`: layers that now cover every chunk (ready to sum and apply).
        case stored(completedLayers: [Int], nodeComplete: Bool)
    }

    /// Stores the push of `node` carrying `layers`, whose values for layer `l` are `payload(l)`. The
    /// caller has checked that `node` is a node of the tree, overlaps no other node held, and that the
    /// statistics match `partialStats(of:)`.
    public mutating func insert(_ node: Range<Int>, layers pushed: [Int], stats: ChunkStats,
                                payload: (Int) -> FloatData) -> Insertion {
        precondition(!received.contains(node), "node \(node) is already complete")
        let new = missing(pushed, of: node)
        if new.isEmpty { return .duplicate }
        var completed: [Int] = []
        var have = partial[node]?.layers ?? []
        for l in new {
            layers[l].insert(node, payload: payload(l), stats: stats)
            have.insert(l)
            if layers[l].isComplete { completed.append(l) }
        }
        let nodeComplete = ranges.indices.allSatisfy { applied[$0] || have.contains($0) }
        if nodeComplete {
            partial[node] = nil
            received.insert(node, payload: (), stats: stats)
        } else {
            partial[node] = (stats, have)
        }
        return .stored(completedLayers: completed, nodeComplete: nodeComplete)
    }

    /// Marks layer `l` applied and lets its pushes go. Nodes that were waiting only on it are complete.
    public mutating func markApplied(_ l: Int) {
        precondition(layers[l].isComplete, "layer \(l) applied before it was complete")
        applied[l] = true
        layers[l] = NodeCollector(total: leaves)
        for (node, p) in partial where ranges.indices.allSatisfy({ applied[$0] || p.layers.contains($0) }) {
            partial[node] = nil
            received.insert(node, payload: (), stats: p.stats)
        }
    }

    /// Forgets the layers received of a node that will not be completed (its worker is gone and its
    /// chunks go to others, perhaps as different nodes): they would overlap what replaces them.
    public mutating func dropPartial(_ node: Range<Int>) {
        guard let p = partial.removeValue(forKey: node) else { return }
        for l in p.layers where !applied[l] { layers[l].remove(node) }
    }

    /// Layer `l`'s sum over all chunks in tree order, in `buffers` (see `NodeCollector.combinedGradient`).
    public func combined(layer l: Int, reusing buffers: inout [[Float]]) -> FloatData {
        layers[l].combinedGradient(reusing: &buffers).payload
    }

    /// The step's statistics, combined in tree order.
    public var stats: ChunkStats {
        received.combine { _, _ in () }.stats
    }
}
