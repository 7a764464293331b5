// The launches of flash_attention.h's kernels (flash_attention_kernels.cuh).
#include <cuda_runtime.h>

#include <cmath>

#include "tensor/cuda/flash_attention.h"
#include "tensor/cuda/flash_attention_kernels.cuh"
#include "tensor/cuda/kernel_helpers.cuh"

namespace ds::tensor::cuda {

using namespace flash;
using detail::blocks_for;

namespace {

dim3 row_grid(int B, int T, int NH) {
  return dim3(blocks_for(T, kRows), static_cast<unsigned>(NH), static_cast<unsigned>(B));
}

}  // namespace

bool flash_attention_supports(int C, int NH) {
  return NH > 0 && C % NH == 0 && C / NH <= kFlashMaxHeadSize;
}

void flash_attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                             cudaStream_t stream) {
  DS_CUDA_REQUIRE(flash_attention_supports(C, NH));
  if (B == 0 || T == 0) return;
  const int hs = C / NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  flash_forward_kernel<<<row_grid(B, T, NH), kThreads, 0, stream>>>(out, lse, Heads{qkv, T, C, hs},
                                                                    NH, scale);
  DS_CUDA_LAUNCHED();
}

namespace {

template <typename S>
void launch_row_dot(float* row_dot, const S* dout, const S* out, int B, int T, int C, int NH,
                    cudaStream_t stream) {
  const int64_t rows = int64_t{B} * NH * T;
  if (rows == 0) return;
  if (const int group = row_dot_group(dout, out, C, NH); group > 0) {
    const int64_t chunks = int64_t{B} * T * (C / detail::Chunk<S>::kCount);
    row_dot_chunks_kernel<<<blocks_for(chunks), kBlock, 0, stream>>>(row_dot, dout, out, chunks, T,
                                                                     C, NH, group);
    DS_CUDA_LAUNCHED();
    return;
  }
  row_dot_kernel<<<blocks_for(rows, kRowsPerBlock), kBlock, 0, stream>>>(row_dot, dout, out, B, T,
                                                                         C, NH);
  DS_CUDA_LAUNCHED();
}

}  // namespace

void attention_row_dot(float* row_dot, const float* dout, const float* out, int B, int T, int C,
                       int NH, cudaStream_t stream) {
  launch_row_dot(row_dot, dout, out, B, T, C, NH, stream);
}
void attention_row_dot(float* row_dot, const __nv_bfloat16* dout, const __nv_bfloat16* out, int B,
                       int T, int C, int NH, cudaStream_t stream) {
  launch_row_dot(row_dot, dout, out, B, T, C, NH, stream);
}

void flash_attention_backward(float* dqkv, float* row_dot, const float* dout, const float* qkv,
                              const float* out, const float* lse, int B, int T, int C, int NH,
                              cudaStream_t stream) {
  DS_CUDA_REQUIRE(flash_attention_supports(C, NH));
  if (B == 0 || T == 0) return;
  const int hs = C / NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  attention_row_dot(row_dot, dout, out, B, T, C, NH, stream);
  const Heads x{qkv, T, C, hs};
  flash_dq_kernel<<<row_grid(B, T, NH), kThreads, 0, stream>>>(dqkv, dout, lse, row_dot, x, NH,
                                                               scale);
  DS_CUDA_LAUNCHED();
  flash_dkv_kernel<<<row_grid(B, T, NH), kThreads, 0, stream>>>(dqkv, dout, lse, row_dot, x, NH,
                                                                scale);
  DS_CUDA_LAUNCHED();
}

}  // namespace ds::tensor::cuda
