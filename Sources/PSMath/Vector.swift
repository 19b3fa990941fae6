import CSIMD

/// Explicit SIMD for the element-wise loops that run over every parameter every step. The compiler does
/// not vectorise them on its own (baseline x86-64 target, possible aliasing), and IEEE addition,
/// multiplication, division and square root are exactly rounded, so a lane computes the same bits as
/// the scalar tail: results do not depend on where a vector boundary falls.
typealias Lanes = SIMD8<Float>

/// Lane-wise square root in one vector instruction, the same bits as `Float.squareRoot()` per lane.
@inline(__always)
func squareRoot(_ v: Lanes) -> Lanes {
    ps_sqrt8(v)
}

@inline(__always)
func load(_ p: UnsafePointer<Float>, _ i: Int) -> Lanes {
    UnsafeRawPointer(p + i).loadUnaligned(as: Lanes.self)
}

@inline(__always)
func load(_ p: UnsafeMutablePointer<Float>, _ i: Int) -> Lanes {
    UnsafeRawPointer(p + i).loadUnaligned(as: Lanes.self)
}

/// Element `i` (of float32 size) at a raw address of any alignment.
@inline(__always)
func load(_ p: UnsafeRawPointer, _ i: Int) -> Lanes {
    p.loadUnaligned(fromByteOffset: i * MemoryLayout<Float>.stride, as: Lanes.self)
}

@inline(__always)
func loadScalar(_ p: UnsafeRawPointer, _ i: Int) -> Float {
    p.loadUnaligned(fromByteOffset: i * MemoryLayout<Float>.stride, as: Float.self)
}

@inline(__always)
func store(_ v: Lanes, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
    UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: Lanes.self)
}

/// Runs `vector` on each full block of `Lanes.scalarCount` elements and `scalar` on the rest.
@inline(__always)
func forEachBlock(_ n: Int, vector: (Int) -> Void, scalar: (Int) -> Void) {
    let width = Lanes.scalarCount
    var i = 0
    while i + width <= n {
        vector(i)
        i += width
    }
    while i < n {
        scalar(i)
        i += 1
    }
}
