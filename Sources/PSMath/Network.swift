/// A dense feed-forward network: its layers, its loss, and where its parameters live. It holds no
/// parameters itself; every call takes the flat parameter vector, so the same `Network` serves the
/// local trainer, a worker computing a chunk, and a server's evaluation.
public struct Network: Sendable, Equatable {
    public struct Layer: Sendable, Equatable {
        public var units: Int
        public var activation: ActivationFunction
        /// Inverted-dropout rate on this layer's output while training (0: none).
        public var dropout: Float

        public init(units: Int, activation: ActivationFunction, dropout: Float = 0) {
            self.units = units
            self.activation = activation
            self.dropout = dropout
        }
    }

    public let layers: [Layer]
    public let loss: LossFunction
    public let layout: ParameterLayout

    public init(inputs: Int, layers: [Layer], loss: LossFunction) {
        precondition(!layers.isEmpty, "a network needs at least one layer")
        precondition(layers.dropLast().allSatisfy { $0.activation != .softmax }, "softmax is output-only")
        precondition(layers.last!.dropout == 0, "no dropout on the output layer")
        precondition((layers.last!.activation == .softmax) == (loss == .softmaxCrossEntropy),
                     "softmax output goes with softmax cross-entropy, and only with it")
        precondition(loss != .binaryCrossEntropy || (layers.last!.activation == .sigmoid && layers.last!.units == 1),
                     "binary cross-entropy needs one sigmoid output")
        self.layers = layers
        self.loss = loss
        self.layout = ParameterLayout(inputs: inputs, units: layers.map(\.units))
    }

    public var inputs: Int { layout.inputs }
    public var outputs: Int { layout.outputs }
    public var parameterCount: Int { layout.count }

    /// Initial parameters from the seed: He-uniform (±√(6/fanIn)) for ReLU layers, Glorot-uniform
    /// (±√(6/(fanIn+units))) otherwise, biases zero. Weight `i` of layer `l` is a pure function of
    /// `(seed, l, i)`.
    public func initialParameters(seed: UInt64) -> [Float] {
        var p = [Float](repeating: 0, count: layout.count)
        for (l, spec) in layout.layers.enumerated() {
            let bound: Double = layers[l].activation == .relu
                ? (6.0 / Double(spec.fanIn)).squareRoot()
                : (6.0 / Double(spec.fanIn + spec.units)).squareRoot()
            let word1 = RandomStream.initialisation.word(UInt32(l))
            for i in 0..<spec.weightCount {
                let b = Philox.block(key: seed, counter: (UInt32(i >> 2), word1, 0, 0))
                let u = Double(Philox.unitFloat(Philox.lane(b, i & 3)))
                p[spec.weightOffset + i] = Float((2 * u - 1) * bound)
            }
        }
        return p
    }
}

/// What one chunk contributes besides its gradient: sums, so that chunks combine by addition.
public struct ChunkStats: Equatable, Sendable {
    /// Sum over samples of the per-sample loss.
    public var lossSum: Double
    /// Correctly classified samples (0 for regression).
    public var correct: Int
    public var samples: Int

    public init(lossSum: Double = 0, correct: Int = 0, samples: Int = 0) {
        self.lossSum = lossSum
        self.correct = correct
        self.samples = samples
    }

    /// Combination in a fixed order (the caller's reduction tree decides the order).
    public static func + (a: ChunkStats, b: ChunkStats) -> ChunkStats {
        ChunkStats(lossSum: a.lossSum + b.lossSum, correct: a.correct + b.correct, samples: a.samples + b.samples)
    }
}

/// Where a chunk's samples come from: a dataset's features and targets, and the dataset indices of
/// the samples in chunk order. The index is also the sample's identity for its dropout mask.
public struct ChunkInput {
    /// `datasetCount × width` row-major.
    public let features: UnsafePointer<Float>
    public let width: Int
    public let targets: Targets
    public let indices: UnsafeBufferPointer<Int32>

    public init(features: UnsafePointer<Float>, width: Int, targets: Targets, indices: UnsafeBufferPointer<Int32>) {
        self.features = features
        self.width = width
        self.targets = targets
        self.indices = indices
    }
}

/// Reusable buffers for one chunk of up to `capacity` samples. Not shared between threads; allocated
/// once so that no step allocates.
public final class Workspace: @unchecked Sendable {
    public let capacity: Int
    let network: Network
    /// Gathered inputs `[capacity × inputs]`.
    let x: UnsafeMutablePointer<Float>
    /// Per layer: activation output `a` `[capacity × units]` (logits for a fused output layer).
    let a: [UnsafeMutablePointer<Float>]
    /// Per layer: output after dropout `h = a ⊙ mask` (the same buffer as `a` where there is no dropout).
    let h: [UnsafeMutablePointer<Float>]
    /// Per layer with dropout: the mask scale `[capacity × units]` (0 or 1/(1−rate)).
    let mask: [UnsafeMutablePointer<Float>?]
    /// Two ping-pong buffers `[capacity × widest]` for backpropagated deltas.
    let delta: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)

    public init(network: Network, capacity: Int) {
        precondition(capacity > 0, "workspace capacity must be positive")
        self.capacity = capacity
        self.network = network
        x = .allocate(capacity: capacity * network.inputs)
        var a: [UnsafeMutablePointer<Float>] = []
        var h: [UnsafeMutablePointer<Float>] = []
        var mask: [UnsafeMutablePointer<Float>?] = []
        for layer in network.layers {
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: capacity * layer.units)
            a.append(buffer)
            if layer.dropout > 0 {
                h.append(.allocate(capacity: capacity * layer.units))
                mask.append(.allocate(capacity: capacity * layer.units))
            } else {
                h.append(buffer)
                mask.append(nil)
            }
        }
        self.a = a
        self.h = h
        self.mask = mask
        let widest = network.layout.widestLayer
        delta = (.allocate(capacity: capacity * widest), .allocate(capacity: capacity * widest))
    }

    deinit {
        x.deallocate()
        for (l, buffer) in a.enumerated() {
            buffer.deallocate()
            if let m = mask[l] {
                m.deallocate()
                h[l].deallocate()
            }
        }
        delta.0.deallocate()
        delta.1.deallocate()
    }

    /// The output layer's values after the last forward pass: probabilities for softmax and sigmoid
    /// outputs, the activation's output otherwise. `[count × outputs]`.
    public func outputs(count: Int) -> [Float] {
        let k = network.outputs
        let last = a[a.count - 1]
        var out = Array(UnsafeBufferPointer(start: last, count: count * k))
        switch network.loss {
        case .softmaxCrossEntropy:
            out.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: count, width: k) }
        case .binaryCrossEntropy:
            for i in out.indices { out[i] = logistic(out[i]) }
        case .meanSquaredError:
            break
        }
        return out
    }
}

extension Network {
    /// Forward and backward for one chunk. Writes the **sum** over the chunk's samples of the
    /// per-sample gradients into `gradient` (`parameterCount` floats, overwritten) and returns the
    /// chunk's loss sum and correct count. Dropout masks are keyed by `(seed, step, sample index)`.
    ///
    /// Deterministic: the same parameters, samples and key give the same bits on any machine running
    /// the same OpenBLAS kernel with the same thread count.
    ///
    /// `layerDone(l, stats)` is called as soon as layer `l`'s range of `gradient` is final, last layer
    /// first, with the chunk's statistics (known once forward is done; not called at all for an empty
    /// chunk, whose gradient is zeroed at once).
    public func gradientSum(parameters: UnsafePointer<Float>, chunk: ChunkInput, dropoutSeed: UInt64, step: Int,
                            gradient: UnsafeMutablePointer<Float>, workspace ws: Workspace,
                            layerDone: ((Int, ChunkStats) -> Void)? = nil) -> ChunkStats {
        let n = chunk.indices.count
        precondition(n <= ws.capacity, "chunk of \(n) samples exceeds workspace capacity \(ws.capacity)")
        precondition(chunk.width == inputs, "chunk width \(chunk.width) differs from network inputs \(inputs)")
        if n == 0 {
            gradient.update(repeating: 0, count: parameterCount)
            return ChunkStats()
        }
        gather(chunk, into: ws.x)
        forward(parameters: parameters, count: n, workspace: ws,
                dropout: (seed: dropoutSeed, step: step, indices: chunk.indices))

        // Output delta dL/dz_last `[n × outputs]` in delta.0, and the chunk's loss and accuracy.
        let last = layers.count - 1
        var current = ws.delta.0
        var spare = ws.delta.1
        let stats = lossAndDelta(logits: ws.a[last], count: n, targets: chunk.targets,
                                 indices: chunk.indices, delta: current)
        if loss == .meanSquaredError {
            layers[last].activation.backward(output: ws.a[last], grad: current, count: n * layers[last].units)
        }

        for l in stride(from: last, through: 0, by: -1) {
            let spec = layout.layers[l]
            let input: UnsafePointer<Float> = l == 0 ? UnsafePointer(ws.x) : UnsafePointer(ws.h[l - 1])
            // dW[units × fanIn] = dZᵀ[units × n] · X[n × fanIn]
            BLAS.gemm(transA: true, transB: false, m: spec.units, n: spec.fanIn, k: n,
                      a: current, lda: spec.units, b: input, ldb: spec.fanIn,
                      beta: 0, c: gradient + spec.weightOffset, ldc: spec.fanIn)
            // db[units] = Σ_rows dZ, in row order.
            columnSums(current, rows: n, width: spec.units, into: gradient + spec.biasOffset)
            // Layer l's gradient is final: a worker can send it while the earlier layers compute.
            layerDone?(l, stats)
            if l > 0 {
                // dH_{l-1}[n × fanIn] = dZ[n × units] · W[units × fanIn]
                BLAS.gemm(transA: false, transB: false, m: n, n: spec.fanIn, k: spec.units,
                          a: current, lda: spec.units, b: parameters + spec.weightOffset, ldb: spec.fanIn,
                          beta: 0, c: spare, ldc: spec.fanIn)
                let count = n * spec.fanIn
                if let m = ws.mask[l - 1] {
                    for i in 0..<count { spare[i] *= m[i] }
                }
                layers[l - 1].activation.backward(output: ws.a[l - 1], grad: spare, count: count)
                swap(&current, &spare)
            }
        }
        return stats
    }

    /// Forward only, no dropout: the chunk's loss sum and correct count. The output layer's values
    /// stay in the workspace (`Workspace.outputs`).
    public func evaluate(parameters: UnsafePointer<Float>, chunk: ChunkInput, workspace ws: Workspace) -> ChunkStats {
        let n = chunk.indices.count
        precondition(n <= ws.capacity, "chunk of \(n) samples exceeds workspace capacity \(ws.capacity)")
        if n == 0 { return ChunkStats() }
        gather(chunk, into: ws.x)
        forward(parameters: parameters, count: n, workspace: ws, dropout: nil)
        return lossAndDelta(logits: ws.a[layers.count - 1], count: n, targets: chunk.targets,
                            indices: chunk.indices, delta: nil)
    }

    /// Copies the chunk's rows into one contiguous `[n × inputs]` block.
    private func gather(_ chunk: ChunkInput, into x: UnsafeMutablePointer<Float>) {
        let w = chunk.width
        for (r, index) in chunk.indices.enumerated() {
            (x + r * w).update(from: chunk.features + Int(index) * w, count: w)
        }
    }

    /// Layer by layer: z = x·Wᵀ + b, a = f(z), h = a ⊙ mask. A fused output (softmax, or the sigmoid
    /// of binary cross-entropy) keeps its logits; the loss applies the function.
    private func forward(parameters: UnsafePointer<Float>, count n: Int, workspace ws: Workspace,
                         dropout: (seed: UInt64, step: Int, indices: UnsafeBufferPointer<Int32>)?) {
        let last = layers.count - 1
        for (l, spec) in layout.layers.enumerated() {
            let input: UnsafePointer<Float> = l == 0 ? UnsafePointer(ws.x) : UnsafePointer(ws.h[l - 1])
            let z = ws.a[l]
            // Start from the bias in every row, then accumulate the product (beta = 1).
            for r in 0..<n {
                (z + r * spec.units).update(from: parameters + spec.biasOffset, count: spec.units)
            }
            // Z[n × units] += X[n × fanIn] · Wᵀ[fanIn × units]
            BLAS.gemm(transA: false, transB: true, m: n, n: spec.units, k: spec.fanIn,
                      a: input, lda: spec.fanIn, b: parameters + spec.weightOffset, ldb: spec.fanIn,
                      beta: 1, c: z, ldc: spec.units)
            let fused = l == last && loss != .meanSquaredError
            if !fused {
                layers[l].activation.apply(z, count: n * spec.units)
            }
            if let dropout, let mask = ws.mask[l] {
                let units = spec.units
                for r in 0..<n {
                    Dropout.fillMask(seed: dropout.seed, step: dropout.step, sample: Int(dropout.indices[r]),
                                     layer: l, rate: layers[l].dropout, units: units, into: mask + r * units)
                }
                let h = ws.h[l]
                for i in 0..<(n * units) { h[i] = z[i] * mask[i] }
            } else if ws.mask[l] != nil {
                // Evaluation: dropout is off, so h is a (inverted dropout needs no rescaling here).
                ws.h[l].update(from: z, count: n * spec.units)
            }
        }
    }

    /// The chunk's loss sum and correct count from the output layer; with `delta`, also dL/dz (for the
    /// fused outputs) or dL/da (for mean squared error) per sample, unscaled by the batch size.
    private func lossAndDelta(logits z: UnsafeMutablePointer<Float>, count n: Int, targets: Targets,
                              indices: UnsafeBufferPointer<Int32>, delta: UnsafeMutablePointer<Float>?) -> ChunkStats {
        let k = outputs
        var lossSum = 0.0
        var correct = 0
        switch (loss, targets) {
        case let (.softmaxCrossEntropy, .classes(labels, _)):
            for r in 0..<n {
                let row = z + r * k
                let label = Int(labels[Int(indices[r])])
                var best = 0
                var m = row[0]
                for j in 1..<k where row[j] > m {
                    m = row[j]
                    best = j
                }
                var sum: Float = 0
                for j in 0..<k { sum += expf(row[j] - m) }
                let lse = m + logf(sum)
                lossSum += Double(lse - row[label])
                if best == label { correct += 1 }
                if let delta {
                    let d = delta + r * k
                    for j in 0..<k { d[j] = expf(row[j] - lse) }
                    d[label] -= 1
                }
            }
        case let (.binaryCrossEntropy, .values(values, width)):
            precondition(width == k, "target width \(width) differs from outputs \(k)")
            let scale = 1 / Float(k)
            for r in 0..<n {
                let row = z + r * k
                let base = Int(indices[r]) * k
                var sampleLoss: Float = 0
                var allRight = true
                for j in 0..<k {
                    let x = row[j]
                    // max(x, 0) − x·t + log(1 + e^−|x|): the logits form, finite for any x.
                    let t = values[base + j]
                    sampleLoss += max(x, 0) - x * t + log1pf(expf(-abs(x)))
                    if (x >= 0) != (t >= 0.5) { allRight = false }
                    if let delta { delta[r * k + j] = (logistic(x) - t) * scale }
                }
                lossSum += Double(sampleLoss * scale)
                if allRight { correct += 1 }
            }
        case (.meanSquaredError, _):
            let scale = 1 / Float(k)
            for r in 0..<n {
                let row = z + r * k
                var sampleLoss: Float = 0
                let index = Int(indices[r])
                for j in 0..<k {
                    let t = targets.value(sample: index, output: j)
                    let e = row[j] - t
                    sampleLoss += e * e
                    if let delta { delta[r * k + j] = 2 * e * scale }
                }
                lossSum += Double(sampleLoss * scale)
                if case let .classes(labels, _) = targets, argmax(row, k) == Int(labels[index]) { correct += 1 }
            }
        default:
            preconditionFailure("loss \(loss) does not take these targets")
        }
        return ChunkStats(lossSum: lossSum, correct: correct, samples: n)
    }
}

extension Targets {
    /// Target `output` of sample `sample`: the value, or the one-hot entry for a class label.
    @inline(__always)
    func value(sample: Int, output: Int) -> Float {
        switch self {
        case let .classes(labels, _): return Int(labels[sample]) == output ? 1 : 0
        case let .values(values, width): return values[sample * width + output]
        }
    }
}

@inline(__always)
func argmax(_ row: UnsafePointer<Float>, _ k: Int) -> Int {
    var best = 0
    for j in 1..<max(k, 1) where row[j] > row[best] { best = j }
    return best
}

/// Column sums of `[rows × width]`, accumulated row by row (a fixed order).
@inline(__always)
func columnSums(_ m: UnsafePointer<Float>, rows: Int, width: Int, into out: UnsafeMutablePointer<Float>) {
    out.update(from: m, count: width)
    for r in 1..<max(rows, 1) {
        let row = m + r * width
        for j in 0..<width { out[j] += row[j] }
    }
}

/// Numerically stable softmax of each row, in place.
func softmaxRows(_ z: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
    for r in 0..<rows {
        let row = z + r * width
        var m = row[0]
        for j in 1..<width { m = max(m, row[j]) }
        var sum: Float = 0
        for j in 0..<width {
            row[j] = expf(row[j] - m)
            sum += row[j]
        }
        for j in 0..<width { row[j] /= sum }
    }
}

import Foundation
