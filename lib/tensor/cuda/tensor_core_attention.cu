// The launches of tensor_core_attention.h's kernels (tensor_core_attention_kernels.cuh).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

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

int padded_length(int T) { return static_cast<int>(blocks_for(T, kRows)) * kRows; }

// The bf16 copy of `src` (row t of batch row b at src + b·batch_stride + t·row_stride) into `to`.
void copy_head_major(HeadMajor to, const float* src, int64_t batch_stride, int64_t row_stride,
                     int B, int T, int NH, int hs, cudaStream_t stream) {
  const int Tp = padded_length(T);
  head_major_kernel<<<block_grid(B, T, NH), kThreads, 0, stream>>>(to, src, batch_stride,
                                                                   row_stride, T, Tp, NH, hs);
  DS_CUDA_LAUNCHED();
}

}  // namespace

void TensorCoreAttention::forward(float* out, float* lse, const float* qkv, int B, int T, int C,
                                  int NH, cudaStream_t stream) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  if (B == 0 || T == 0) return;
  const int hs = C / NH, Tp = padded_length(T);
  const size_t elements = size_t(B) * NH * Tp * hs;
  operands_.grow(3 * elements * sizeof(Bf16));
  Bf16* base = operands_.as<Bf16>();
  const HeadMajor q{base}, k{base + elements}, v{base + 2 * elements};
  const int64_t batch = int64_t{T} * 3 * C;
  copy_head_major(q, qkv, batch, 3 * C, B, T, NH, hs, stream);
  copy_head_major(k, qkv + C, batch, 3 * C, B, T, NH, hs, stream);
  copy_head_major(v, qkv + 2 * C, batch, 3 * C, B, T, NH, hs, stream);
  with_head_frags(hs, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    launch(forward_kernel<F>, shared_bytes<ForwardShared<F>>(), block_grid(B, T, NH), stream, out,
           lse, q, k, v, T, Tp, C, NH, softmax_scale(hs));
  });
}

void TensorCoreAttention::backward(float* dqkv, float* row_dot, const float* dout, const float* qkv,
                                   const float* out, const float* lse, int B, int T, int C, int NH,
                                   cudaStream_t stream) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  if (B == 0 || T == 0) return;
  const int hs = C / NH, Tp = padded_length(T);
  const size_t elements = size_t(B) * NH * Tp * hs;
  operands_.grow(4 * elements * sizeof(Bf16));
  Bf16* base = operands_.as<Bf16>();
  const HeadMajor q{base}, k{base + elements}, v{base + 2 * elements}, d{base + 3 * elements};
  const int64_t batch = int64_t{T} * 3 * C;
  copy_head_major(q, qkv, batch, 3 * C, B, T, NH, hs, stream);
  copy_head_major(k, qkv + C, batch, 3 * C, B, T, NH, hs, stream);
  copy_head_major(v, qkv + 2 * C, batch, 3 * C, B, T, NH, hs, stream);
  copy_head_major(d, dout, int64_t{T} * C, C, B, T, NH, hs, stream);
  attention_row_dot(row_dot, dout, out, B, T, C, NH, stream);
  with_head_frags(hs, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    const float scale = softmax_scale(hs);
    const float* stats = row_dot;
    launch(dq_kernel<F>, shared_bytes<DqShared<F>>(), block_grid(B, T, NH), stream, dqkv, d, lse,
           stats, q, k, v, T, Tp, C, NH, scale);
    launch(dkv_kernel<F>, shared_bytes<DkvShared<F>>(), block_grid(B, T, NH), stream, dqkv, d, lse,
           stats, q, k, v, T, Tp, C, NH, scale);
  });
}

}  // namespace ds::tensor::cuda
