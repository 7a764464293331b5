// CUDA versions of tensor/cpu/cast.h: conversions between fp32 and the storage dtypes (bf16 and
// f16, rounded to nearest even), scaled conversions for gradients on the wire, and adding
// into 16-bit storage. Plain conversions take eight elements a thread where both pointers are
// 16-byte aligned, the others one; the same results as the CPU's for finite values
// (the CPU's bf16 rounding keeps NaN quiet, and so does __float2bfloat16_rn).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tensor/cuda/device_buffer.h"
#include "tensor/dtype.h"

namespace ds::tensor::cuda {

void to_f32(float* out, const void* in, DType dtype, int64_t n, cudaStream_t stream);
void from_f32(void* out, DType dtype, const float* in, int64_t n, cudaStream_t stream);
void add_f32_into(void* out, DType dtype, const float* in, int64_t n, cudaStream_t stream);
// out = round(scale * in) and out = round(out + scale * in), any dtypes; out may equal in.
void convert_scaled(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                    float scale, cudaStream_t stream);
void add_scaled_into(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                     float scale, cudaStream_t stream);
// `values` (n fp32, nullable) rounded to bf16 into `copy`, grown to fit: bf16 GEMM operands made
// from fp32 tensors. Returns the copy (nullptr for nullptr).
const void* rounded_to_bf16(const float* values, int64_t n, DeviceBuffer& copy,
                            cudaStream_t stream);

}  // namespace ds::tensor::cuda
