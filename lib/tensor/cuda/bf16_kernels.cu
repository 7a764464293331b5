// The launches of bf16_kernels.h: a host switch on the DType picks the instance of op_kernels.cuh's
// storage-generic kernels. A thread per element, a warp per row, a block per vocabulary row, and
// detail::column_sum for the fixed-order column sums.
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/device_buffer.h"
#include "tensor/cuda/kernel_helpers.cuh"
#include "tensor/cuda/kernels.h"
#include "tensor/cuda/layernorm_row_kernels.cuh"
#include "tensor/cuda/op_kernels.cuh"

namespace ds::tensor::cuda::mixed {

using namespace detail;
using namespace op_kernels;

void encoder_forward(void* out, const int32_t* tokens, const void* wte, const void* wpe, int B,
                     int T, int C, DType dtype, cudaStream_t stream) {
  const int64_t total = int64_t{B} * T * C;
  if (total == 0) return;
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    encoder_forward_kernel<<<blocks_for(total), kBlock, 0, stream>>>(
        static_cast<S*>(out), tokens, static_cast<const S*>(wte), static_cast<const S*>(wpe),
        int64_t{B} * T, T, C);
  });
  DS_CUDA_LAUNCHED();
}

void encoder_backward(float* dwte, float* dwpe, const void* dout, int B, int T, int C,
                      const TokenBuckets& buckets, DType dtype, cudaStream_t stream) {
  DS_CUDA_REQUIRE(buckets.size() == int64_t{B} * T);
  if (C == 0 || int64_t{B} * T == 0) return;
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* d = static_cast<const S*>(dout);
    const dim3 grid(static_cast<unsigned>(buckets.distinct()), blocks_for(C));
    wte_backward_kernel<<<grid, kBlock, 0, stream>>>(dwte, d, buckets.tokens(), buckets.offsets(),
                                                     buckets.positions(), C);
    DS_CUDA_LAUNCHED();
    if (dwpe != nullptr) {
      wpe_backward_kernel<<<blocks_for(int64_t{T} * C), kBlock, 0, stream>>>(dwpe, d, B, T, C);
      DS_CUDA_LAUNCHED();
    }
  });
}

namespace {

template <typename S, typename Out>
void launch_layernorm_forward(Out* out, float* mean, float* rstd, const S* inp, const S* weight,
                              const S* bias, int N, int C, float eps, cudaStream_t stream) {
  if (N == 0) return;
  const unsigned blocks = blocks_for(N, kRowsPerBlock);
  if (layernorm_rows_apply(C, {out, inp, weight, bias})) {
    with_lane_octets(C, [&](auto octets) {
      layernorm_forward_rows_kernel<decltype(octets)::value, S, Out>
          <<<blocks, kBlock, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C, eps);
    });
  } else {
    layernorm_forward_kernel<S, Out>
        <<<blocks, kBlock, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C, eps);
  }
  DS_CUDA_LAUNCHED();
}

// Layernorm's backward into partials, by the row kernel where it applies: the number of blocks,
// whose partial sums column_sum then adds. With kHandOn, dinp is also handed on (the kernel's
// dinp16 and third partial sums).
template <typename S, typename G, bool kHandOn>
int layernorm_backward_rows(S* dinp, __nv_bfloat16* dinp16, const S* dresidual, const G* dout,
                            const S* inp, const S* weight, const float* mean, const float* rstd,
                            int N, int C, float* partials, cudaStream_t stream) {
  int blocks = 0;
  with_lane_octets(C, [&](auto octets) {
    const auto kernel = layernorm_backward_rows_kernel<decltype(octets)::value, S, G, kHandOn>;
    constexpr int kThreads = kLayernormRowsWarps * kWarp;
    // Asked once per instance: the most shared memory any width it takes uses.
    static const int wave = one_wave(
        kernel, kThreads, layernorm_rows_shared_bytes(kMaxLaneOctets * kRowOctetsPerWarp, kHandOn));
    const LayernormBackwardLaunch launch(N, C, kLayernormRowsWarps,
                                         std::min(wave, kLayernormBlocks));
    kernel<<<launch.blocks, kThreads, layernorm_rows_shared_bytes(C, kHandOn), stream>>>(
        dinp, dinp16, dresidual, partials, dout, inp, weight, mean, rstd, N, C, launch.rows);
    blocks = launch.blocks;
  });
  DS_CUDA_LAUNCHED();
  return blocks;
}

// The same by layernorm_backward_kernel, for any width its sums fit in shared memory.
template <typename S, typename G>
int layernorm_backward_columns(S* dinp, const S* dresidual, const G* dout, const S* inp,
                               const S* weight, const float* mean, const float* rstd, int N, int C,
                               float* partials, cudaStream_t stream) {
  const auto kernel = layernorm_backward_kernel<S, G>;
  static const size_t room = allow_dynamic_shared_memory(kernel);  // asked once per instance
  // Up to 8 warps a block (a 512-block grid then keeps 4096 warps reading), as many as the shared
  // memory of their column sums allows.
  int warps = 8;
  while (warps > 1 && layernorm_backward_shared_bytes(warps, C) > room) --warps;
  const LayernormBackwardLaunch launch(N, C, warps);
  // One warp's sums take 8·C bytes: C up to 12,672 with an A100's or H100's 99 KiB and more.
  const bool layernorm_width_fits_shared_memory = launch.shared_bytes <= room;
  DS_CUDA_REQUIRE(layernorm_width_fits_shared_memory);
  kernel<<<launch.blocks, launch.warps * kWarp, launch.shared_bytes, stream>>>(
      dinp, dresidual, partials, dout, inp, weight, mean, rstd, N, C, launch.rows);
  DS_CUDA_LAUNCHED();
  return launch.blocks;
}

// Returns whether it handed dinp on (`hand_off`: nullptr, or where to; only the row kernel does).
template <typename S, typename G>
bool launch_layernorm_backward(S* dinp, const S* dresidual, S* dweight, S* dbias, const G* dout,
                               const S* inp, const S* weight, const float* mean, const float* rstd,
                               int N, int C, float* partials, const GradientHandOff* hand_off,
                               cudaStream_t stream) {
  if (N == 0) return false;
  const bool rows = layernorm_rows_apply(C, {dinp, dresidual, dout, inp, weight});
  // fp32 dinp only (the bf16 sublayers' residual gradient), which its copy rounds once.
  constexpr bool kFp32 = std::is_same_v<S, float>;
  const bool hand_on = kFp32 && rows && hand_off != nullptr && aligned_16(hand_off->copy);
  int blocks = 0;
  if (!rows) {
    blocks = layernorm_backward_columns(dinp, dresidual, dout, inp, weight, mean, rstd, N, C,
                                        partials, stream);
  } else if (!hand_on) {
    blocks = layernorm_backward_rows<S, G, false>(dinp, nullptr, dresidual, dout, inp, weight, mean,
                                                  rstd, N, C, partials, stream);
  } else if constexpr (kFp32) {
    blocks = layernorm_backward_rows<S, G, true>(dinp, hand_off->copy, dresidual, dout, inp, weight,
                                                 mean, rstd, N, C, partials, stream);
  }
  column_sum(dweight, blocks, C, RowsTerm<float>{partials, C}, stream);
  column_sum(dbias, blocks, C, RowsTerm<float>{partials + int64_t{blocks} * C, C}, stream);
  if (hand_on) {
    DS_CUDA_CALL(cudaMemsetAsync(hand_off->sums, 0, sizeof(float) * size_t(C), stream));
    column_sum(hand_off->sums, blocks, C, RowsTerm<float>{partials + 2 * int64_t{blocks} * C, C},
               stream);
  }
  return hand_on;
}

}  // namespace

void layernorm_forward(void* out, float* mean, float* rstd, const void* inp, const void* weight,
                       const void* bias, int N, int C, float eps, DType dtype,
                       cudaStream_t stream) {
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    launch_layernorm_forward(static_cast<S*>(out), mean, rstd, static_cast<const S*>(inp),
                             static_cast<const S*>(weight), static_cast<const S*>(bias), N, C, eps,
                             stream);
  });
}

void layernorm_forward_to_bf16(__nv_bfloat16* out, float* mean, float* rstd, const float* inp,
                               const float* weight, const float* bias, int N, int C, float eps,
                               cudaStream_t stream) {
  launch_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps, stream);
}

int64_t layernorm_partial_floats(int C) { return 3 * int64_t{kLayernormBlocks} * C; }

float* layernorm_partials(DeviceBuffer& buffer, int C) {
  buffer.grow(sizeof(float) * static_cast<size_t>(layernorm_partial_floats(C)));
  return buffer.as<float>();
}

void layernorm_backward(void* dinp, const void* dresidual, void* dweight, void* dbias,
                        const void* dout, const void* inp, const void* weight, const float* mean,
                        const float* rstd, int N, int C, float* partials, DType dtype,
                        cudaStream_t stream) {
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    launch_layernorm_backward(
        static_cast<S*>(dinp), static_cast<const S*>(dresidual), static_cast<S*>(dweight),
        static_cast<S*>(dbias), static_cast<const S*>(dout), static_cast<const S*>(inp),
        static_cast<const S*>(weight), mean, rstd, N, C, partials, nullptr, stream);
  });
}

bool layernorm_backward_from_bf16(float* dinp, const float* dresidual, float* dweight, float* dbias,
                                  const __nv_bfloat16* dout, const float* inp, const float* weight,
                                  const float* mean, const float* rstd, int N, int C,
                                  float* partials, const GradientHandOff* hand_off,
                                  cudaStream_t stream) {
  return launch_layernorm_backward(dinp, dresidual, dweight, dbias, dout, inp, weight, mean, rstd,
                                   N, C, partials, hand_off, stream);
}

void gelu_forward(void* out, const void* inp, int64_t N, DType dtype, cudaStream_t stream) {
  if (N == 0) return;
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    gelu_forward_kernel<<<blocks_for(N), kBlock, 0, stream>>>(static_cast<S*>(out),
                                                              static_cast<const S*>(inp), N);
  });
  DS_CUDA_LAUNCHED();
}

void gelu_backward(void* dinp, const void* inp, const void* dout, int64_t N, DType dtype,
                   cudaStream_t stream) {
  if (N == 0) return;
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    gelu_backward_kernel<<<blocks_for(N), kBlock, 0, stream>>>(
        static_cast<S*>(dinp), static_cast<const S*>(inp), static_cast<const S*>(dout), N);
  });
  DS_CUDA_LAUNCHED();
}

void gelu_backward_inplace(void* d, const void* inp, int64_t N, DType dtype, cudaStream_t stream) {
  if (N == 0) return;
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    gelu_backward_inplace_kernel<<<blocks_for(N), kBlock, 0, stream>>>(
        static_cast<S*>(d), static_cast<const S*>(inp), N);
  });
  DS_CUDA_LAUNCHED();
}

void residual_forward(void* out, const void* a, const void* b, int64_t N, DType dtype,
                      cudaStream_t stream) {
  if (N == 0) return;
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    residual_forward_kernel<<<blocks_for(N), kBlock, 0, stream>>>(
        static_cast<S*>(out), static_cast<const S*>(a), static_cast<const S*>(b), N);
  });
  DS_CUDA_LAUNCHED();
}

void add_inplace(void* dst, const void* src, int64_t N, DType dtype, cudaStream_t stream) {
  if (N == 0) return;
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    add_inplace_kernel<<<blocks_for(N), kBlock, 0, stream>>>(static_cast<S*>(dst),
                                                             static_cast<const S*>(src), N);
  });
  DS_CUDA_LAUNCHED();
}

void softmax_cross_entropy(float* losses, void* dlogits, const void* logits, const int32_t* targets,
                           float dloss, int N, int V, int64_t ld, DType dtype,
                           cudaStream_t stream) {
  DS_CUDA_REQUIRE(ld >= V);
  if (N == 0) return;
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto kernel = softmax_cross_entropy_kernel<S>;
    // Staged in shared memory where every row starts 16-byte aligned and one fits.
    const size_t bytes = cross_entropy_staged_bytes<S>(V);
    static const size_t room = allow_dynamic_shared_memory(kernel);
    const bool aligned = reinterpret_cast<uintptr_t>(logits) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(dlogits) % 16 == 0 &&
                         ld % Chunk<S>::kCount == 0;
    const bool staged = aligned && bytes <= room;
    kernel<<<N, kCrossEntropyBlock, staged ? bytes : 0, stream>>>(losses, static_cast<S*>(dlogits),
                                                                  static_cast<const S*>(logits),
                                                                  targets, dloss, V, ld, staged);
  });
  DS_CUDA_LAUNCHED();
}

void broadcast_rows(void* out, const void* row, int N, int C, DType dtype, cudaStream_t stream) {
  const int64_t total = int64_t{N} * C;
  if (total == 0) return;
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    broadcast_rows_kernel<<<blocks_for(total), kBlock, 0, stream>>>(
        static_cast<S*>(out), static_cast<const S*>(row), int64_t{N}, C);
  });
  DS_CUDA_LAUNCHED();
}

void matmul_bias_backward(void* dbias, const void* dout, int N, int OC, DType dtype,
                          cudaStream_t stream) {
  matmul_bias_backward(dbias, dtype, dout, dtype, N, OC, stream);
}

void matmul_bias_backward(void* dbias, DType dbias_dtype, const void* dout, DType dout_dtype, int N,
                          int OC, cudaStream_t stream) {
  dispatch_storage(dbias_dtype, [&](auto grad_tag) {
    using G = typename decltype(grad_tag)::type;
    dispatch_storage(dout_dtype, [&](auto tag) {
      using S = typename decltype(tag)::type;
      column_sum(static_cast<G*>(dbias), N, OC, RowsTerm<S>{static_cast<const S*>(dout), OC},
                 stream);
    });
  });
}

int64_t bias_partial_floats(int N, int C) { return int64_t{bias_chunks(N)} * C; }

namespace {

// Whether bias_partials_kernel takes dout [N, C] (its chunks are the grid's y).
bool chunked_columns(const void* dout, int N, int C) {
  return C % 8 == 0 && aligned_16(dout) && bias_chunks(N) <= 65535;
}

// The two passes of bias_gradient; `rounded`: dout's bf16 copy too (fp32 dout).
void launch_bias_gradient(float* dbias, const void* dout, DType dout_dtype, int N, int C,
                          DeviceBuffer& partials, __nv_bfloat16* rounded, cudaStream_t stream) {
  partials.grow(sizeof(float) * static_cast<size_t>(bias_partial_floats(N, C)));
  float* sums = partials.as<float>();
  dispatch_storage(dout_dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    bias_partials_kernel<S>
        <<<dim3(blocks_for(C, 8 * kBiasGroups), static_cast<unsigned>(bias_chunks(N))),
           dim3(kBiasGroups, kBiasLanes), 0, stream>>>(sums, static_cast<const S*>(dout), N, C,
                                                       rounded);
    DS_CUDA_LAUNCHED();
  });
  column_sum(dbias, bias_chunks(N), C, RowsTerm<float>{sums, C}, stream);
}

}  // namespace

void bias_gradient(float* dbias, const void* dout, DType dout_dtype, int N, int C,
                   DeviceBuffer& partials, cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  if (!chunked_columns(dout, N, C)) {
    return matmul_bias_backward(dbias, DType::kF32, dout, dout_dtype, N, C, stream);
  }
  launch_bias_gradient(dbias, dout, dout_dtype, N, C, partials, nullptr, stream);
}

const void* rounded_with_bias_gradient(float* dbias, const float* dout, int N, int C,
                                       DeviceBuffer& copy, DeviceBuffer& partials,
                                       cudaStream_t stream) {
  if (dbias == nullptr || N == 0 || C == 0 || !chunked_columns(dout, N, C)) {
    const void* rounded = rounded_to_bf16(dout, int64_t{N} * C, copy, stream);
    if (dbias != nullptr) bias_gradient(dbias, dout, DType::kF32, N, C, partials, stream);
    return rounded;
  }
  copy.grow(sizeof(__nv_bfloat16) * static_cast<size_t>(int64_t{N} * C));
  launch_bias_gradient(dbias, dout, DType::kF32, N, C, partials, copy.as<__nv_bfloat16>(), stream);
  return copy.data();
}

}  // namespace ds::tensor::cuda::mixed
