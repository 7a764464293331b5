// The launches of tensor_core_attention.h's kernels (tensor_core_attention_kernels.cuh).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/flash_attention.h"
#include "tensor/cuda/kernel_helpers.cuh"
#include "tensor/cuda/tensor_core_attention.h"
#include "tensor/cuda/tensor_core_attention_kernels.cuh"

namespace ds::tensor::cuda {

using namespace tc_attention;
using detail::blocks_for;

namespace {

constexpr int kMaxGridY = 65535;  // and z: the grid takes heads in y and batch rows in z

// Calls fn(std::integral_constant<int, F>) for the head size F·16.
template <typename Fn>
void with_head_frags(int hs, Fn&& fn) {
  static_assert(kMaxFrags == 8, "one case per head size");
  switch (hs / kFrag) {
    case 1:
      return fn(std::integral_constant<int, 1>{});
    case 2:
      return fn(std::integral_constant<int, 2>{});
    case 3:
      return fn(std::integral_constant<int, 3>{});
    case 4:
      return fn(std::integral_constant<int, 4>{});
    case 5:
      return fn(std::integral_constant<int, 5>{});
    case 6:
      return fn(std::integral_constant<int, 6>{});
    case 7:
      return fn(std::integral_constant<int, 7>{});
    case 8:
      return fn(std::integral_constant<int, 8>{});
  }
}

// Launches `kernel` with `bytes` of dynamic shared memory, which past 48 KiB a kernel must opt
// into.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), size_t bytes, dim3 grid, cudaStream_t stream, Args... args) {
  DS_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(bytes)));
  kernel<<<grid, kThreads, bytes, stream>>>(args...);
  DS_CUDA_LAUNCHED();
}

dim3 block_grid(int B, int T, int NH) {
  DS_CUDA_REQUIRE(B <= kMaxGridY && NH <= kMaxGridY);
  return dim3(blocks_for(T, kRows), static_cast<unsigned>(NH), static_cast<unsigned>(B));
}

float softmax_scale(int hs) { return 1.0f / std::sqrt(static_cast<float>(hs)); }

}  // namespace

bool tensor_core_attention_supports(int C, int NH) {
  if (NH <= 0 || C % NH != 0) return false;
  const int hs = C / NH;
  return hs > 0 && hs % kFrag == 0 && hs <= kMaxFrags * kFrag;
}

size_t tensor_core_attention_shared_bytes(int C, int NH) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  size_t bytes = 0;
  with_head_frags(C / NH, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    bytes = std::max({shared_bytes<ForwardShared<F>>(), shared_bytes<DqShared<F>>(),
                      shared_bytes<DkvShared<F>>()});
  });
  return bytes;
}

namespace {

template <typename Out>
void run_forward(Out* out, float* lse, const Bf16* qkv, int B, int T, int C, int NH,
                 cudaStream_t stream) {
  const Operands x(qkv, nullptr, T, C, NH);
  with_head_frags(C / NH, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    launch(forward_kernel<F, Out>, shared_bytes<ForwardShared<F>>(), block_grid(B, T, NH), stream,
           out, lse, x.q, x.k, x.v, T, C, NH, softmax_scale(C / NH));
  });
}

template <typename Out>
void run_backward(Out* dqkv, const float* row_dot, const Bf16* dout, const Bf16* qkv,
                  const float* lse, int B, int T, int C, int NH, cudaStream_t stream) {
  const Operands x(qkv, dout, T, C, NH);
  with_head_frags(C / NH, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    const float scale = softmax_scale(C / NH);
    launch(dq_kernel<F, Out>, shared_bytes<DqShared<F>>(), block_grid(B, T, NH), stream, dqkv,
           x.dout, lse, row_dot, x.q, x.k, x.v, T, C, NH, scale);
    launch(dkv_kernel<F, Out>, shared_bytes<DkvShared<F>>(), block_grid(B, T, NH), stream, dqkv,
           x.dout, lse, row_dot, x.q, x.k, x.v, T, C, NH, scale);
  });
}

}  // namespace

void TensorCoreAttention::forward(float* out, float* lse, const float* qkv, int B, int T, int C,
                                  int NH, cudaStream_t stream) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  if (B == 0 || T == 0) return;
  const int64_t n = int64_t{B} * T * 3 * C;
  operands_.grow(sizeof(Bf16) * static_cast<size_t>(n));
  Bf16* qkv16 = operands_.as<Bf16>();
  from_f32(qkv16, DType::kBF16, qkv, n, stream);
  run_forward(out, lse, qkv16, B, T, C, NH, stream);
}

void TensorCoreAttention::backward(float* dqkv, float* row_dot, const float* dout, const float* qkv,
                                   const float* out, const float* lse, int B, int T, int C, int NH,
                                   cudaStream_t stream) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  if (B == 0 || T == 0) return;
  const int64_t rows = int64_t{B} * T * C;
  // qkv's copy, then dout's: 3C and C bf16 a row keep both 16-byte aligned.
  operands_.grow(sizeof(Bf16) * static_cast<size_t>(4 * rows));
  Bf16* qkv16 = operands_.as<Bf16>();
  Bf16* dout16 = qkv16 + 3 * rows;
  from_f32(qkv16, DType::kBF16, qkv, 3 * rows, stream);
  from_f32(dout16, DType::kBF16, dout, rows, stream);
  attention_row_dot(row_dot, dout, out, B, T, C, NH, stream);
  run_backward(dqkv, row_dot, dout16, qkv16, lse, B, T, C, NH, stream);
}

void TensorCoreAttention::forward(Bf16* out, float* lse, const Bf16* qkv, int B, int T, int C,
                                  int NH, cudaStream_t stream) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  DS_CUDA_REQUIRE(aligned_16(out) && aligned_16(qkv));
  if (B == 0 || T == 0) return;
  run_forward(out, lse, qkv, B, T, C, NH, stream);
}

void TensorCoreAttention::backward(Bf16* dqkv, float* row_dot, const Bf16* dout, const Bf16* qkv,
                                   const Bf16* out, const float* lse, int B, int T, int C, int NH,
                                   cudaStream_t stream) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  DS_CUDA_REQUIRE(aligned_16(dqkv) && aligned_16(dout) && aligned_16(qkv));
  if (B == 0 || T == 0) return;
  attention_row_dot(row_dot, dout, out, B, T, C, NH, stream);
  run_backward(dqkv, row_dot, dout, qkv, lse, B, T, C, NH, stream);
}

}  // namespace ds::tensor::cuda
