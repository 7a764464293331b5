// What the .cu files here share for their launches: the launch of the
// fixed-order column sum behind every parameter-gradient reduction. The device code they share
// is device_primitives.cuh.
// Internal to lib/tensor/cuda.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/device_primitives.cuh"

namespace ds::tensor::cuda::detail {

template <typename T, typename Term>
void column_sum(T* dst, int N, int C, Term term, cudaStream_t stream) {
  if (C == 0) return;
  column_sum_kernel<<<blocks_for(C, kColumnWidth), dim3(kColumnWidth, kColumnRows), 0, stream>>>(
      dst, N, C, term);
  DS_CUDA_LAUNCHED();
}

}  // namespace ds::tensor::cuda::detail
