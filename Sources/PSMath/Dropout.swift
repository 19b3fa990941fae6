/// Inverted dropout whose mask is a pure function of `(seed, step, sample, layer, unit)`, so the same
/// sample in the same step gets the same mask on whichever worker computes it.
public enum Dropout {
    /// Fills `scale[u]` for `units` units of one sample: `1/(1−rate)` where the unit is kept, else 0.
    /// One Philox block covers four consecutive units.
    @inline(__always)
    public static func fillMask(seed: UInt64, step: Int, sample: Int, layer: Int, rate: Float,
                                units: Int, into scale: UnsafeMutablePointer<Float>) {
        precondition(rate > 0 && rate < 1, "dropout rate \(rate) outside (0, 1)")
        let keep = 1 / (1 - rate)
        let layerWord = RandomStream.dropout.word(UInt32(layer))
        var u = 0
        while u < units {
            let b = Philox.block(key: seed, counter: (UInt32(u >> 2), layerWord,
                                                      UInt32(truncatingIfNeeded: sample),
                                                      UInt32(truncatingIfNeeded: step)))
            for lane in 0..<min(4, units - u) {
                scale[u + lane] = Philox.unitFloat(Philox.lane(b, lane)) >= rate ? keep : 0
            }
            u += 4
        }
    }

    /// Whether one unit is kept (the reference for tests; same numbers as `fillMask`).
    public static func keeps(seed: UInt64, step: Int, sample: Int, layer: Int, unit: Int, rate: Float) -> Bool {
        let b = Philox.block(key: seed, counter: (UInt32(unit >> 2), RandomStream.dropout.word(UInt32(layer)),
                                                  UInt32(truncatingIfNeeded: sample),
                                                  UInt32(truncatingIfNeeded: step)))
        let word = Philox.lane(b, unit & 3)
        return Philox.unitFloat(word) >= rate
    }
}
