// What the .cu files here share for their launches: the storage type of a DType for a template,
// and the launch of the fixed-order column sum behind every parameter-gradient reduction. The
// device code they share is device_primitives.cuh.
// Internal to lib/tensor/cuda.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/device_primitives.cuh"
#include "tensor/dtype.h"

namespace ds::tensor::cuda::detail {

template <typename T>
struct Tag {
  using type = T;
};

// Calls fn(Tag<S>{}) with S the storage type of `dtype` (float, __nv_bfloat16, __half).
template <typename Fn>
void dispatch_storage(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kF32:
      fn(Tag<float>{});
      return;
    case DType::kBF16:
      fn(Tag<__nv_bfloat16>{});
      return;
    case DType::kF16:
      fn(Tag<__half>{});
      return;
  }
  DS_CUDA_REQUIRE(!"unknown DType");
}

// The blocks of `kernel` (`threads` a block, `shared_bytes` of dynamic shared memory) that the
// current device runs at once: a grid of one wave, for kernels whose blocks loop over their work.
template <typename Kernel>
int one_wave(Kernel kernel, int threads, size_t shared_bytes) {
  int device = 0, sms = 0, per_sm = 0;
  DS_CUDA_CALL(cudaGetDevice(&device));
  DS_CUDA_CALL(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  DS_CUDA_CALL(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, shared_bytes));
  return sms * per_sm > 0 ? sms * per_sm : 1;
}

// Lets `kernel` take all the dynamic shared memory a block may have on the current device (the
// static shared memory it declares aside), and returns how much that is.
template <typename Kernel>
size_t allow_dynamic_shared_memory(Kernel kernel) {
  int device = 0, optin = 0;
  DS_CUDA_CALL(cudaGetDevice(&device));
  DS_CUDA_CALL(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  cudaFuncAttributes attributes{};
  DS_CUDA_CALL(cudaFuncGetAttributes(&attributes, kernel));
  const int room = optin - static_cast<int>(attributes.sharedSizeBytes);
  DS_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, room));
  return static_cast<size_t>(room);
}

template <typename T, typename Term>
void column_sum(T* dst, int N, int C, Term term, cudaStream_t stream) {
  if (C == 0) return;
  column_sum_kernel<<<blocks_for(C, kColumnWidth), dim3(kColumnWidth, kColumnRows), 0, stream>>>(
      dst, N, C, term);
  DS_CUDA_LAUNCHED();
}

}  // namespace ds::tensor::cuda::detail
