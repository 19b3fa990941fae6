/// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel Random Numbers: As Easy as
/// 1, 2, 3" (SC 2011). Every draw is a pure function of a 64-bit key and a 128-bit counter, so any
/// process can reproduce any random number without sharing generator state: this is what makes a
/// dropout mask or an epoch permutation identical on every worker.
public enum Philox {
    /// The four 32-bit words of one block.
    public typealias Block = (UInt32, UInt32, UInt32, UInt32)

    /// Returns the block for `counter` under `key` (ten rounds, the published constants).
    @inline(__always)
    public static func block(key: UInt64, counter: Block) -> Block {
        var k0 = UInt32(truncatingIfNeeded: key)
        var k1 = UInt32(truncatingIfNeeded: key >> 32)
        var c = counter
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c.0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c.2)
            c = (UInt32(truncatingIfNeeded: p1 >> 32) ^ c.1 ^ k0,
                 UInt32(truncatingIfNeeded: p1),
                 UInt32(truncatingIfNeeded: p0 >> 32) ^ c.3 ^ k1,
                 UInt32(truncatingIfNeeded: p0))
            k0 = k0 &+ 0x9E37_79B9
            k1 = k1 &+ 0xBB67_AE85
        }
        return c
    }

    /// Word `i` (0...3) of a block, without building an array.
    @inline(__always)
    public static func lane(_ b: Block, _ i: Int) -> UInt32 {
        switch i {
        case 0: return b.0
        case 1: return b.1
        case 2: return b.2
        default: return b.3
        }
    }

    /// A uniform float in [0, 1) from the top 24 bits of a word (exactly representable).
    @inline(__always)
    public static func unitFloat(_ word: UInt32) -> Float {
        Float(word >> 8) * (1.0 / 16_777_216.0)
    }

    /// A uniform double in [0, 1) from two words (53 bits).
    @inline(__always)
    public static func unitDouble(_ high: UInt32, _ low: UInt32) -> Double {
        let bits = (UInt64(high) << 21) ^ UInt64(low >> 11)
        return Double(bits & ((1 << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A uniform integer in `0..<bound` (Lemire's multiply-shift; the bias is below 2^-32 for the
    /// bounds we use, and the result is a pure function of the inputs, which is what matters here).
    @inline(__always)
    public static func below(_ bound: UInt32, word: UInt32) -> UInt32 {
        UInt32(truncatingIfNeeded: (UInt64(word) &* UInt64(bound)) >> 32)
    }
}

/// The purposes that draw random numbers. Each is a separate stream: the tag occupies the top byte of
/// counter word 1, so no two purposes ever see the same counter.
public enum RandomStream: UInt32, Sendable {
    case initialisation = 1
    case dropout = 2
    case epochPermutation = 3
    case validationSplit = 4

    /// Counter word 1 for this stream and a 24-bit sub-index (layer number, epoch, …).
    @inline(__always)
    public func word(_ subIndex: UInt32) -> UInt32 {
        precondition(subIndex < (1 << 24), "stream sub-index \(subIndex) exceeds 24 bits")
        return (rawValue << 24) | subIndex
    }
}
