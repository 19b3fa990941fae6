// Vector operations Swift's SIMD types do not lower to single instructions; header only.
#pragma once

typedef float ps_float8 __attribute__((ext_vector_type(8)));

// Lane-wise IEEE square root, correctly rounded like `Float.squareRoot()` (so the same bits), as one
// vector instruction (vsqrtps; two sqrtps without AVX). Swift's `SIMD8<Float>.squareRoot()` goes lane
// by lane through the scalar libm path, which checks every lane for a negative input.
static inline ps_float8 ps_sqrt8(ps_float8 x) {
    return __builtin_elementwise_sqrt(x);
}
