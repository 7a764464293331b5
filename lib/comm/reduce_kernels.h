// Element-wise reductions for the CPU backends. Every dtype is accumulated in fp32, in a fixed
// input order, and rounded once: bf16 and f16 sums are as exact as fp32 allows, and every rank
// computes bit-identical results whichever rank did the reduction.
#pragma once

#include <cstddef>

#include "comm/process_group.h"
#include "tensor/dtype.h"

namespace ds::comm {

// dst[i] = op(inputs[0][i], ..., inputs[n-1][i]); kAvg divides the sum by `divisor`.
// dst may alias any input. With `dst2`, the result is written there too in the same pass
// (the shared-memory backend keeps one copy for the other ranks and one for the caller).
void reduce_inputs(void* dst, const void* const* inputs, int n, size_t count, tensor::DType dtype,
                   ReduceOp op, int divisor, void* dst2 = nullptr);

// Widens `count` elements to fp32, and narrows them back with round-to-nearest-even.
void widen_to_f32(float* dst, const void* src, size_t count, tensor::DType dtype);
void narrow_from_f32(void* dst, const float* src, size_t count, tensor::DType dtype);

}  // namespace ds::comm
