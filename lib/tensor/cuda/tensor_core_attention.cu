// The launches of tensor_core_attention.h's kernels (tensor_core_attention_kernels.cuh).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <exception>
#include <string>
#include <type_traits>

#include "tensor/cuda/bf16_kernels.h"
#if defined(DS_WITH_CUDNN)
#include "tensor/cuda/cudnn_attention.h"
#endif
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/flash_attention.h"
#include "tensor/cuda/kernel_helpers.cuh"
#include "tensor/cuda/tensor_core_attention.h"
#include "tensor/cuda/tensor_core_attention_kernels.cuh"
#include "tensor/cuda/variant_timing.h"

namespace ds::tensor::cuda {

using namespace tc_attention;
using detail::blocks_for;

namespace {

constexpr int kMaxGridY = 65535;  // and z: the grid takes heads in y and batch rows in z

// Calls fn(std::integral_constant<int, F>) for the head size F·16.
template <typename Fn>
void with_head_frags(int hs, Fn&& fn) {
  detail::with_constant<kMaxFrags>(hs / kFrag, fn);
}

// Launches kKernel with `bytes` of dynamic shared memory, which past 48 KiB a kernel must opt
// into: once per kernel (its layout's size is fixed) and device (the attribute belongs to the
// device's context), not per launch.
template <auto kKernel, typename... Args>
void launch(size_t bytes, dim3 grid, cudaStream_t stream, Args... args) {
  static std::atomic<uint64_t> opted_in{0};  // a bit per device, below 64; others ask every time
  int device = 0;
  DS_CUDA_CALL(cudaGetDevice(&device));
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if ((opted_in.load(std::memory_order_relaxed) & bit) == 0) {
    DS_CUDA_CALL(cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(bytes)));
    opted_in.fetch_or(bit, std::memory_order_relaxed);
  }
  kKernel<<<grid, kThreads, bytes, stream>>>(args...);
  DS_CUDA_LAUNCHED();
}

// Blocks of `rows` rows of one (batch row, head) each.
dim3 block_grid(int B, int T, int NH, int rows = kRows) {
  DS_CUDA_REQUIRE(B <= kMaxGridY && NH <= kMaxGridY);
  return dim3(blocks_for(T, rows), static_cast<unsigned>(NH), static_cast<unsigned>(B));
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
    bytes = std::max({shared_bytes<ForwardShared<F, 1>>(), shared_bytes<DqShared<F, 1>>(),
                      shared_bytes<DkvShared<F>>()});
  });
  return bytes;
}

namespace {

// Launches variant V of the forward (kRowFrags row fragments a warp, 64 rows a block each).
template <int V, typename Out>
void launch_forward(Out* out, float* lse, const Bf16* qkv, int B, int T, int C, int NH,
                    cudaStream_t stream) {
  const Operands x(qkv, nullptr, T, C, NH);
  with_head_frags(C / NH, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    constexpr int kM = kRowFrags<F, V>;
    launch<forward_kernel<F, kM, Out>>(shared_bytes<ForwardShared<F, kM>>(),
                                       block_grid(B, T, NH, kBlockRows<kM>), stream, out, lse, x.q,
                                       x.k, x.v, T, C, NH, softmax_scale(C / NH));
  });
}

// Launches variant V of dQ, as launch_forward the forward's.
template <int V, typename Out>
void launch_dq(Out* dqkv, float* bias_partials, const Operands& x, const float* row_dot,
               const float* lse, int B, int T, int C, int NH, cudaStream_t stream) {
  with_head_frags(C / NH, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    constexpr int kM = kRowFrags<F, V>;
    launch<dq_kernel<F, kM, Out>>(
        shared_bytes<DqShared<F, kM>>(), block_grid(B, T, NH, kBlockRows<kM>), stream, dqkv,
        bias_partials, x.dout, lse, row_dot, x.q, x.k, x.v, T, C, NH, softmax_scale(C / NH));
  });
}

// Launches variant V of dK/dV.
template <int V, typename Out>
void launch_dkv(Out* dqkv, float* bias_partials, const Operands& x, const float* row_dot,
                const float* lse, int B, int T, int C, int NH, cudaStream_t stream) {
  with_head_frags(C / NH, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    launch<dkv_kernel<F, kHoldsFragments<F, V>, Out>>(
        shared_bytes<DkvShared<F>>(), block_grid(B, T, NH), stream, dqkv, bias_partials, x.dout,
        lse, row_dot, x.q, x.k, x.v, T, C, NH, softmax_scale(C / NH));
  });
}

// The shared memory of the variants' largest block at this head size (dQ's 128 rows), 0 where
// the head size has no variants.
size_t variant_shared_bytes(int C, int NH) {
  size_t bytes = 0;
  with_head_frags(C / NH, [&](auto frags) {
    constexpr int F = decltype(frags)::value;
    if constexpr (kHasVariants<F>) {
      bytes = std::max({shared_bytes<ForwardShared<F, 2>>(), shared_bytes<DqShared<F, 2>>(),
                        shared_bytes<DkvShared<F>>()});
    }
  });
  return bytes;
}

}  // namespace

#if defined(DS_WITH_CUDNN)
CudnnAttention* TensorCoreAttention::cudnn() {
  if (set_variant_ >= 0) return nullptr;
  if (!cudnn_asked_) {
    cudnn_asked_ = true;
    try {
      if (CudnnAttention::wanted(&cudnn_why_)) cudnn_ = std::make_unique<CudnnAttention>();
    } catch (const std::exception& e) {  // cuDNN loads but gives no handle: go on without it
      cudnn_why_ = e.what();
    }
  }
  return cudnn_.get();
}

bool TensorCoreAttention::uses_cudnn(int B, int T, int C, int NH) {
  CudnnAttention* c = cudnn();
  return c != nullptr && (c->has_forward(B, T, C, NH) || c->has_backward(B, T, C, NH));
}
#else
// A complete type for the unique_ptr's deleter, in builds without cuDNN's headers.
class CudnnAttention {};

bool TensorCoreAttention::uses_cudnn(int, int, int, int) {
  cudnn_why_ = "built without cuDNN's headers";
  return false;
}
#endif

TensorCoreAttention::TensorCoreAttention() = default;
TensorCoreAttention::~TensorCoreAttention() = default;

void TensorCoreAttention::set_variant(int variant) {
  DS_CUDA_REQUIRE(variant >= -1 && variant <= 1);
  set_variant_ = variant;
}

bool TensorCoreAttention::has_variants(int C, int NH) {
  const size_t bytes = variant_shared_bytes(C, NH);
  if (bytes == 0) return false;
  if (shared_limit_ < 0) {
    int device = 0;
    DS_CUDA_CALL(cudaGetDevice(&device));
    DS_CUDA_CALL(
        cudaDeviceGetAttribute(&shared_limit_, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  }
  return bytes <= static_cast<size_t>(shared_limit_);
}

int TensorCoreAttention::variant(VariantChoice& choice, bool repeatable, bool bf16, int B, int T,
                                 int C, int NH, const std::function<void(int)>& run,
                                 cudaStream_t stream) {
  if (!has_variants(C, NH)) return 0;
  if (set_variant_ >= 0) return set_variant_;
  if (!repeatable) return 0;
  // Sizes by T's 128-row blocks: generation grows T a token at a time, and would otherwise time
  // the kernels at every length.
  return choice.pick({B, (T + 127) / 128 * 128, C, NH, bf16 ? 1 : 0},
                     [&] { return time_variants(run, stream); });
}

template <typename Out>
void TensorCoreAttention::run_forward(Out* out, float* lse, const Bf16* qkv, int B, int T, int C,
                                      int NH, cudaStream_t stream) {
  const auto run = [&](int v) {
    if (v == 1) return launch_forward<1>(out, lse, qkv, B, T, C, NH, stream);
    launch_forward<0>(out, lse, qkv, B, T, C, NH, stream);
  };
  constexpr bool kBf16 = std::is_same_v<Out, Bf16>;
  run(variant(forward_, true, kBf16, B, T, C, NH, run, stream));
}

template <typename Out>
void TensorCoreAttention::run_backward(Out* dqkv, float* dbias, const float* row_dot,
                                       const Bf16* dout, const Bf16* qkv, const float* lse, int B,
                                       int T, int C, int NH, cudaStream_t stream) {
  const Operands x(qkv, dout, T, C, NH);
  float* partials = nullptr;
  if (dbias != nullptr) {
    const int64_t floats = int64_t{bias_partial_rows(B, T)} * 3 * C;
    bias_partials_.grow(sizeof(float) * static_cast<size_t>(floats));
    partials = bias_partials_.as<float>();
  }
  const auto run_dq = [&](int v) {
    if (v == 1) return launch_dq<1>(dqkv, partials, x, row_dot, lse, B, T, C, NH, stream);
    launch_dq<0>(dqkv, partials, x, row_dot, lse, B, T, C, NH, stream);
  };
  const auto run_dkv = [&](int v) {
    if (v == 1) return launch_dkv<1>(dqkv, partials, x, row_dot, lse, B, T, C, NH, stream);
    launch_dkv<0>(dqkv, partials, x, row_dot, lse, B, T, C, NH, stream);
  };
  constexpr bool kWritten = !kGradientsAdd<Out>;  // bf16 dqkv; fp32 accumulates
  run_dq(variant(dq_, kWritten, kWritten, B, T, C, NH, run_dq, stream));
  run_dkv(variant(dkv_, kWritten, kWritten, B, T, C, NH, run_dkv, stream));
  if (dbias != nullptr) {
    mixed::matmul_bias_backward(dbias, DType::kF32, partials, DType::kF32, bias_partial_rows(B, T),
                                3 * C, stream);
  }
}

std::string TensorCoreAttention::report() const {
  std::string report;
#if defined(DS_WITH_CUDNN)
  if (cudnn_ != nullptr) {
    const std::string engines = cudnn_->report();
    if (!engines.empty()) report = "cuDNN fused attention (" + cudnn_why_ + ") at " + engines;
    if (!cudnn_->refusal().empty()) {
      report += (report.empty() ? "" : "; ") + ("cuDNN refused: " + cudnn_->refusal());
    }
  } else if (cudnn_asked_) {
    report = "cuDNN fused attention not used: " + cudnn_why_;
  }
#endif
  for (const VariantChoice* choice : {&forward_, &dq_, &dkv_}) {
    const std::string mine = choice->report();
    if (!mine.empty()) report += (report.empty() ? "" : "; ") + mine;
  }
  return report;
}

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
  run_backward(dqkv, nullptr, row_dot, dout16, qkv16, lse, B, T, C, NH, stream);
}

void TensorCoreAttention::forward(Bf16* out, float* lse, const Bf16* qkv, int B, int T, int C,
                                  int NH, cudaStream_t stream) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  DS_CUDA_REQUIRE(aligned_16(out) && aligned_16(qkv));
  if (B == 0 || T == 0) return;
#if defined(DS_WITH_CUDNN)
  if (CudnnAttention* c = cudnn(); c != nullptr && c->has_forward(B, T, C, NH)) {
    return c->forward(out, lse, qkv, B, T, C, NH, stream);
  }
#endif
  run_forward(out, lse, qkv, B, T, C, NH, stream);
}

void TensorCoreAttention::backward(Bf16* dqkv, float* dbias, float* row_dot, const Bf16* dout,
                                   const Bf16* qkv, const Bf16* out, const float* lse, int B, int T,
                                   int C, int NH, cudaStream_t stream) {
  DS_CUDA_REQUIRE(tensor_core_attention_supports(C, NH));
  DS_CUDA_REQUIRE(aligned_16(dqkv) && aligned_16(dout) && aligned_16(qkv));
  if (B == 0 || T == 0) return;
#if defined(DS_WITH_CUDNN)
  if (CudnnAttention* c = cudnn(); c != nullptr && c->has_backward(B, T, C, NH)) {
    c->backward(dqkv, dout, qkv, out, lse, B, T, C, NH, stream);
    if (dbias != nullptr) {
      mixed::bias_gradient(dbias, dqkv, DType::kBF16, B * T, 3 * C, bias_partials_, stream);
    }
    return;
  }
#endif
  attention_row_dot(row_dot, dout, out, B, T, C, NH, stream);
  run_backward(dqkv, dbias, row_dot, dout, qkv, lse, B, T, C, NH, stream);
}

}  // namespace ds::tensor::cuda
