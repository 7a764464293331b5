// Element access for kernels that are templates over the storage type S of their tensors (float,
// __nv_bfloat16 or __half): load() widens an element to fp32 exactly, store() rounds an fp32 value
// to S once, to nearest even, and detail::column_sum into S adds a column's fp32 total to the
// stored value and rounds once. A kernel that loads, computes in fp32 and stores through these
// therefore gives, at S, exactly its fp32 instance's result on the widened inputs, rounded to S.
// Like device_primitives.cuh it needs nothing but CUDA's device language and its bf16/f16
// headers, so it also builds against the CPU emulation (test/emulated_cuda/).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "tensor/cuda/device_primitives.cuh"

namespace ds::tensor::cuda::detail {

__device__ inline float load(const float* p, int64_t i) { return p[i]; }
__device__ inline float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ inline float load(const __half* p, int64_t i) { return __half2float(p[i]); }

__device__ inline void store(float* p, int64_t i, float x) { p[i] = x; }
__device__ inline void store(__nv_bfloat16* p, int64_t i, float x) {
  p[i] = __float2bfloat16_rn(x);
}
__device__ inline void store(__half* p, int64_t i, float x) { p[i] = __float2half_rn(x); }

// 16 bytes of S (8 bf16/f16 or 4 floats), for kernels that move rows in 16-byte loads and stores
// where a row starts 16-byte aligned (chunked).
template <typename S>
struct alignas(16) Chunk {
  static constexpr int kCount = 16 / sizeof(S);
  S x[kCount];
};
template <typename S>
__device__ inline bool chunked(const S* row) {
  return reinterpret_cast<uintptr_t>(row) % sizeof(Chunk<S>) == 0;
}

template <>
struct ColumnAdd<__nv_bfloat16> {
  __device__ static void add(__nv_bfloat16* dst, int c, float total) {
    store(dst, c, load(dst, c) + total);
  }
};
template <>
struct ColumnAdd<__half> {
  __device__ static void add(__half* dst, int c, float total) {
    store(dst, c, load(dst, c) + total);
  }
};

}  // namespace ds::tensor::cuda::detail
