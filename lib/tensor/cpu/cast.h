// Conversions between fp32 compute buffers and the storage dtypes of mixed
// precision (bf16, f16). An f32
// "storage" is copied as is, so callers need no special case for fp32 runs.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace ds::tensor::cpu {

// out[i] = float(in[i]) for `in` stored as `dtype`.
void to_f32(float* out, const void* in, DType dtype, int64_t n);
// out[i] = round(in[i]) into `dtype` (nearest even).
void from_f32(void* out, DType dtype, const float* in, int64_t n);
// out[i] = round(float(out[i]) + in[i]): accumulating gradients in their storage dtype.
void add_f32_into(void* out, DType dtype, const float* in, int64_t n);

// Between any two dtypes, scaled on the way: out[i] = round(scale * float(in[i])), and
// out[i] = round(float(out[i]) + scale * float(in[i])). Gradients going onto and coming
// off the wire (communication_data_type, predivide factors) use these. `out` may equal
// `in` for convert_scaled when the dtypes match.
void convert_scaled(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                    float scale);
void add_scaled_into(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                     float scale);

}  // namespace ds::tensor::cpu
