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

// Where the bf16 copies of one call live: `count` tensors of B·NH·Tp·hs elements each, in the
// workspace, which grows to fit.
struct Copies {
  int B, T, Tp, C, NH, hs;
  size_t elements;
  Bf16* base;
  Copies(DeviceBuffer& workspace, int count, int B_, int T_, int C_, int NH_)
      : B(B_),
        T(T_),
        Tp(static_cast<int>(blocks_for(T_, kRows)) * kRows),
        C(C_),
        NH(NH_),
        hs(C_ / NH_),
        elements(size_t(B_) * NH_ * Tp * hs) {
    workspace.grow(static_cast<size_t>(count) * elements * sizeof(Bf16));
    base = workspace.as<Bf16>();
  }
  HeadMajor tensor(int i) const { return {base + static_cast<size_t>(i) * elements}; }

  // The bf16 copy of `src` (row t of batch row b at src + b·batch_stride + t·row_stride).
  void copy(HeadMajor to, const float* src, int64_t batch_stride, int64_t row_stride,
            cudaStream_t stream) const {
    head_major_kernel<<<block_grid(B, T, NH), kThreads, 0, stream>>>(to, src, batch_stride,
                                                                     row_stride, T, Tp, NH, hs);
    DS_CUDA_LAUNCHED();
  }
  // Q, K and V from qkv [B,T,3C] into tensors 0, 1 and 2.
  void copy_qkv(const float* qkv, cudaStream_t stream) const {
    const int64_t batch = int64_t{T} * 3 * C;
    for (int i = 0; i < 3; ++i) copy(tensor(i), qkv + int64_t{i} * C, batch, 3 * C, stream);
  }
};

}  // namespace

void TensorCoreAttention::forward(float* out, float* lse, const float* qkv, int B, int T, int C,
                                  int NH, cudaStream_t stream) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  if (B == 0 || T == 0) return;
  const Copies copies(operands_, 3, B, T, C, NH);
  copies.copy_qkv(qkv, stream);
  with_head_frags(copies.hs, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    launch(forward_kernel<F>, shared_bytes<ForwardShared<F>>(), block_grid(B, T, NH), stream, out,
           lse, copies.tensor(0), copies.tensor(1), copies.tensor(2), T, copies.Tp, C, NH,
           softmax_scale(copies.hs));
  });
}

void TensorCoreAttention::backward(float* dqkv, float* row_dot, const float* dout, const float* qkv,
                                   const float* out, const float* lse, int B, int T, int C, int NH,
                                   cudaStream_t stream) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  if (B == 0 || T == 0) return;
  const Copies copies(operands_, 4, B, T, C, NH);
  copies.copy_qkv(qkv, stream);
  const HeadMajor d = copies.tensor(3);
  copies.copy(d, dout, int64_t{T} * C, C, stream);
  attention_row_dot(row_dot, dout, out, B, T, C, NH, stream);
  const HeadMajor q = copies.tensor(0), k = copies.tensor(1), v = copies.tensor(2);
  with_head_frags(copies.hs, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    const float scale = softmax_scale(copies.hs);
    const float* dots = row_dot;
    launch(dq_kernel<F>, shared_bytes<DqShared<F>>(), block_grid(B, T, NH), stream, dqkv, d, lse,
           dots, q, k, v, T, copies.Tp, C, NH, scale);
    launch(dkv_kernel<F>, shared_bytes<DkvShared<F>>(), block_grid(B, T, NH), stream, dqkv, d, lse,
           dots, q, k, v, T, copies.Tp, C, NH, scale);
  });
}

}  // namespace ds::tensor::cuda
