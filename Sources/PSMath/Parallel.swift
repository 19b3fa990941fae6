import Dispatch

/// Splitting an element-wise pass over a vector across threads. Every rule it is used for computes
/// each element from that element alone, so the bits do not depend on the number of parts or where
/// their boundaries fall.
enum Parallel {
    /// Below this many elements per part, waking threads costs more than it saves: the update passes
    /// are memory-bound, and a 235k-parameter Adam step takes ~0.12 ms on one core (`ps-bench update`:
    /// 2 threads are slower at 235k, 1.5x faster at 600k, 1.2x at 2M on a 2-core machine).
    static let elementsPerPartMin = 262_144

    /// Runs `body(offset, count)` over contiguous blocks covering `0 ..< n`: one block on the calling
    /// thread when `parts` is 1 or `n` is small, otherwise up to `parts` blocks concurrently. Blocks
    /// start at multiples of the SIMD width so each part's vector loop covers the same elements a
    /// single pass would (not needed for the bits, only to keep the scalar tails at the end).
    static func blocks(_ n: Int, parts: Int, _ body: @Sendable (Int, Int) -> Void) {
        let count = min(max(parts, 1), max(n / elementsPerPartMin, 1))
        guard count > 1 else {
            body(0, n)
            return
        }
        let width = Lanes.scalarCount
        let step = (n / count + width - 1) / width * width
        DispatchQueue.concurrentPerform(iterations: count) { part in
            let start = part * step
            let end = part == count - 1 ? n : min(n, start + step)
            if start < end { body(start, end - start) }
        }
    }
}
