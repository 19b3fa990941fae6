import PSCore
import PSMath

/// The gradient pushes of one synchronous step, collected per part.
///
/// The parts are the job's push ranges (`ParameterLayout.pushRanges`: groups of layers). A worker
/// pushes each node of the reduction tree either whole or one part at a time (last part first, as
/// backward finishes them). Each part has its own `NodeCollector`; a part is complete once its nodes
/// cover every chunk, and the server can then sum and apply it while the earlier parts are still on
/// their way. A node counts as received once each of its parts has been received or applied, and the
/// step's statistics (carried whole by every push of a node) combine over received nodes in tree order.
///
/// Pure data: the coordinator checks who may push what; this type keeps what arrived and says what
/// is complete. The payload is the pushed values (`StepGradients`, the local bookkeeping of tests and
/// tools) or nothing (`StepProgress`, what the coordinator keeps: it holds no tensors, the parameter
/// shard holds the values).
public typealias StepGradients = PartCollector<FloatData>
/// A step's pushes without their values: which nodes and parts are in, and their statistics.
public typealias StepProgress = PartCollector<Void>

public struct PartCollector<Payload> {
    /// Each part's key range, in order; they tile the parameter vector.
    public let ranges: [Range<Int>]
    /// Per part, the nodes received for it (dropped once the part has been applied).
    public private(set) var parts: [NodeCollector<Payload>]
    /// Parts already summed and applied; later pushes of them are duplicates.
    public private(set) var applied: [Bool]
    /// Nodes with every part in, and their statistics.
    public private(set) var received: NodeCollector<Void>
    /// Nodes with some parts in: their statistics (checked equal on every push) and which parts.
    public private(set) var partial: [Range<Int>: (stats: ChunkStats, parts: Set<Int>)] = [:]

    public init(leaves: Int, ranges: [Range<Int>]) {
        precondition(!ranges.isEmpty, "no parts")
        self.ranges = ranges
        parts = ranges.map { _ in NodeCollector(total: leaves) }
        applied = ranges.map { _ in false }
        received = NodeCollector(total: leaves)
    }

    public var leaves: Int { received.total }
    public var parameterCount: Int { ranges.last!.upperBound }
    /// Every node received: the step's statistics are complete and every part is complete or applied.
    public var isComplete: Bool { received.isComplete }
    /// Nodes whose every part is in.
    public var receivedNodes: [Range<Int>] { Array(received.nodes.keys) }

    /// The parts a push of `range` (a gradient's key range) carries: all of them for the whole
    /// vector, one for exactly one part's range, nil for anything else.
    public func parts(covering range: Range<Int>) -> [Int]? {
        if range == 0..<parameterCount { return Array(ranges.indices) }
        if let l = ranges.firstIndex(of: range) { return [l] }
        return nil
    }

    /// Whether `node` has every part received or applied.
    public func hasNode(_ node: Range<Int>) -> Bool { received.contains(node) }

    /// Of `parts`, those `node` still needs (not received for it, part not applied).
    public func missing(_ parts: [Int], of node: Range<Int>) -> [Int] {
        parts.filter { !applied[$0] && !(partial[node]?.parts.contains($0) ?? false) }
    }

    /// The statistics an earlier push of `node` reported, if some of its parts are in.
    public func partialStats(of node: Range<Int>) -> ChunkStats? { partial[node]?.stats }

    public enum Insertion: Equatable {
        /// Nothing new: every part of the push is already in or applied.
        case duplicate
        /// Stored. `completedParts`: parts that now cover every chunk (ready to sum and apply).
        case stored(completedParts: [Int], nodeComplete: Bool)
    }

    /// Stores the push of `node` carrying `parts`, whose values for part `p` are `payload(p)`. The
    /// caller has checked that `node` is a node of the tree, overlaps no other node held, and that the
    /// statistics match `partialStats(of:)`.
    public mutating func insert(_ node: Range<Int>, parts pushed: [Int], stats: ChunkStats,
                                payload: (Int) -> Payload) -> Insertion {
        precondition(!received.contains(node), "node \(node) is already complete")
        let new = missing(pushed, of: node)
        if new.isEmpty { return .duplicate }
        var completed: [Int] = []
        var have = partial[node]?.parts ?? []
        for l in new {
            parts[l].insert(node, payload: payload(l), stats: stats)
            have.insert(l)
            if parts[l].isComplete { completed.append(l) }
        }
        let nodeComplete = ranges.indices.allSatisfy { applied[$0] || have.contains($0) }
        if nodeComplete {
            partial[node] = nil
            received.insert(node, payload: (), stats: stats)
        } else {
            partial[node] = (stats, have)
        }
        return .stored(completedParts: completed, nodeComplete: nodeComplete)
    }

    /// Marks part `l` applied and lets its pushes go. Nodes that were waiting only on it are complete.
    public mutating func markApplied(_ l: Int) {
        precondition(parts[l].isComplete, "part \(l) applied before it was complete")
        applied[l] = true
        parts[l] = NodeCollector(total: leaves)
        for (node, p) in partial where ranges.indices.allSatisfy({ applied[$0] || p.parts.contains($0) }) {
            partial[node] = nil
            received.insert(node, payload: (), stats: p.stats)
        }
    }

    /// Forgets the parts received of a node that will not be completed (its worker is gone and its
    /// chunks go to others, perhaps as different nodes): they would overlap what replaces them.
    public mutating func dropPartial(_ node: Range<Int>) {
        guard let p = partial.removeValue(forKey: node) else { return }
        for l in p.parts where !applied[l] { parts[l].remove(node) }
    }

    /// Whether every loss reported so far (by complete and partial nodes) is finite. Once any part is
    /// complete every chunk has reported, so this is then whether the step's loss is finite (the sum of
    /// finite float32 losses cannot overflow a double).
    public var reportedLossesFinite: Bool {
        received.nodes.values.allSatisfy { $0.stats.lossSum.isFinite } && partial.values.allSatisfy { $0.stats.lossSum.isFinite }
    }

    /// The step's statistics, combined in tree order.
    public var stats: ChunkStats {
        received.combine { _, _ in () }.stats
    }
}

extension PartCollector where Payload == FloatData {
    /// Part `l`'s sum over all chunks in tree order, in `buffers` (see `NodeCollector.combinedGradient`).
    public func combined(part l: Int, reusing buffers: inout [[Float]]) -> FloatData {
        parts[l].combinedGradient(reusing: &buffers).payload
    }
}

extension PartCollector where Payload == Void {
    /// Stores a push of `node` carrying `parts` (no values: the shard keeps them).
    public mutating func insert(_ node: Range<Int>, parts pushed: [Int], stats: ChunkStats) -> Insertion {
        insert(node, parts: pushed, stats: stats) { _ in () }
    }
}
