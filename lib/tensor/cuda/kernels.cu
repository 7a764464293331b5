// kernels.h: the fp32 instances of the storage-generic kernels (bf16_kernels.h), the launches of
// the fp32-only ones (fp32_op_kernels.cuh), the matrix products on cuBLAS (blas.h), and the host
// side of TokenBuckets.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/device_memory.h"
#include "tensor/cuda/fp32_op_kernels.cuh"
#include "tensor/cuda/kernel_helpers.cuh"
#include "tensor/cuda/kernels.h"
#include "tensor/token_grouping.h"

namespace ds::tensor::cuda {

using namespace detail;
using namespace op_kernels;

void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                     int T, int C, cudaStream_t stream) {
  mixed::encoder_forward(out, tokens, wte, wpe, B, T, C, DType::kF32, stream);
}

TokenBuckets::~TokenBuckets() {
  if (uploaded_ != nullptr) {
    cudaEventSynchronize(uploaded_);  // the last copy may still read staging_
    cudaEventDestroy(uploaded_);
  }
  host_free_pinned(staging_);
}

void TokenBuckets::build_from_host(const int32_t* host_tokens, int64_t n, cudaStream_t stream) {
  distinct_ = 0;
  size_ = n;
  if (n == 0) return;
  if (uploaded_ == nullptr) {
    DS_CUDA_CALL(cudaEventCreateWithFlags(&uploaded_, cudaEventDisableTiming));
  }
  // The last copy from staging_ must have read it before it is rewritten or freed (as a rule it
  // did long ago: a micro-batch apart).
  DS_CUDA_CALL(cudaEventSynchronize(uploaded_));
  if (n > capacity_) {
    // Growing (the first micro-batches only). Both new buffers exist before anything is
    // replaced, so a failed allocation leaves the old ones in use; freeing the old device buffer
    // waits for the kernels that may still read it (DeviceBuffer::grow).
    const size_t grown = sizeof(int32_t) * static_cast<size_t>(3 * n + 1);
    DeviceBuffer device(grown);
    auto* staging =
        static_cast<int32_t*>(host_allocate_pinned(grown, "the embedding's token buckets"));
    device_ = std::move(device);
    host_free_pinned(staging_);
    staging_ = staging;
    capacity_ = n;
  }
  int32_t* offsets = staging_ + capacity_;
  distinct_ = group_positions_by_token(host_tokens, n, staging_, offsets, offsets + capacity_ + 1);
  DS_CUDA_CALL(cudaMemcpyAsync(device_.data(), staging_, bytes(), cudaMemcpyHostToDevice, stream));
  DS_CUDA_CALL(cudaEventRecord(uploaded_, stream));
}

void TokenBuckets::build(const int32_t* device_tokens, int64_t n, cudaStream_t stream) {
  device_copy_.resize(static_cast<size_t>(n));
  if (n > 0) {
    DS_CUDA_CALL(cudaMemcpyAsync(device_copy_.data(), device_tokens, sizeof(int32_t) * n,
                                 cudaMemcpyDeviceToHost, stream));
  }
  DS_CUDA_CALL(cudaStreamSynchronize(stream));
  build_from_host(device_copy_.data(), n, stream);
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, int B, int T, int C,
                      const TokenBuckets& buckets, cudaStream_t stream) {
  mixed::encoder_backward(dwte, dwpe, dout, B, T, C, buckets, DType::kF32, stream);
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, float eps, cudaStream_t stream) {
  mixed::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps, DType::kF32, stream);
}

void layernorm_backward(float* dinp, const float* dresidual, float* dweight, float* dbias,
                        const float* dout, const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C, float* partials, cudaStream_t stream) {
  mixed::layernorm_backward(dinp, dresidual, dweight, dbias, dout, inp, weight, mean, rstd, N, C,
                            partials, DType::kF32, stream);
}

void matmul_forward(Blas& blas, float* out, const float* inp, const float* weight,
                    const float* bias, int N, int IC, int OC, WeightLayout layout,
                    cudaStream_t stream) {
  if (N == 0 || OC == 0) return;
  float beta = 0.0f;
  if (bias != nullptr) {
    // Start from the bias and let the GEMM add to it, as the CPU does.
    mixed::broadcast_rows(out, bias, N, OC, DType::kF32, stream);
    beta = 1.0f;
  }
  if (layout == WeightLayout::kInOut) {
    gemm(blas, stream, false, false, N, OC, IC, 1.0f, inp, IC, weight, OC, beta, out, OC);
  } else {
    gemm(blas, stream, false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, beta, out, OC);
  }
}

void matmul_backward(Blas& blas, float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int IC, int OC,
                     WeightLayout layout, cudaStream_t stream) {
  if (layout == WeightLayout::kInOut) {
    if (dinp != nullptr) {
      gemm(blas, stream, false, true, N, IC, OC, 1.0f, dout, OC, weight, OC, 1.0f, dinp, IC);
    }
    gemm(blas, stream, true, false, IC, OC, N, 1.0f, inp, IC, dout, OC, 1.0f, dweight, OC);
  } else {
    if (dinp != nullptr) {
      gemm(blas, stream, false, false, N, IC, OC, 1.0f, dout, OC, weight, IC, 1.0f, dinp, IC);
    }
    gemm(blas, stream, true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
  }
  if (dbias != nullptr) mixed::matmul_bias_backward(dbias, dout, N, OC, DType::kF32, stream);
}

// Per batch row b, the heads form a strided batch: head h's q, k, v and output start hs floats
// after head h-1's, and its T×T block of att T*T floats after.
void attention_forward(Blas& blas, float* out, float* att, const float* qkv, int B, int T, int C,
                       int NH, cudaStream_t stream) {
  DS_CUDA_REQUIRE(NH > 0 && C % NH == 0);
  if (B == 0 || T == 0) return;
  const int hs = C / NH;
  const int C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int64_t TT = int64_t{T} * T;
  for (int b = 0; b < B; ++b) {
    const float* q = qkv + int64_t{b} * T * C3;
    const float* k = q + C;
    float* a = att + int64_t{b} * NH * TT;
    // S = scale Q K^T over all T×T (the softmax masks the upper triangle).
    gemm_batched(blas, stream, false, true, T, T, hs, scale, q, C3, hs, k, C3, hs, 0.0f, a, T, TT,
                 NH);
  }
  const int64_t rows = int64_t{B} * NH * T;
  causal_softmax_kernel<<<blocks_for(rows, kRowsPerBlock), kBlock, 0, stream>>>(att, rows, T);
  DS_CUDA_LAUNCHED();
  for (int b = 0; b < B; ++b) {
    const float* v = qkv + int64_t{b} * T * C3 + 2 * C;
    const float* a = att + int64_t{b} * NH * TT;
    float* o = out + int64_t{b} * T * C;
    gemm_batched(blas, stream, false, false, T, hs, T, 1.0f, a, T, TT, v, C3, hs, 0.0f, o, C, hs,
                 NH);
  }
}

void attention_backward(Blas& blas, float* dqkv, float* datt_scratch, const float* dout,
                        const float* qkv, const float* att, int B, int T, int C, int NH,
                        cudaStream_t stream) {
  DS_CUDA_REQUIRE(NH > 0 && C % NH == 0);
  if (B == 0 || T == 0) return;
  const int hs = C / NH;
  const int C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int64_t TT = int64_t{T} * T;
  // dP = dO V^T.
  for (int b = 0; b < B; ++b) {
    const float* v = qkv + int64_t{b} * T * C3 + 2 * C;
    const float* d = dout + int64_t{b} * T * C;
    gemm_batched(blas, stream, false, true, T, T, hs, 1.0f, d, C, hs, v, C3, hs, 0.0f,
                 datt_scratch + int64_t{b} * NH * TT, T, TT, NH);
  }
  const int64_t rows = int64_t{B} * NH * T;
  causal_softmax_backward_kernel<<<blocks_for(rows, kRowsPerBlock), kBlock, 0, stream>>>(
      datt_scratch, att, rows, T);
  DS_CUDA_LAUNCHED();
  for (int b = 0; b < B; ++b) {
    const int64_t head0 = int64_t{b} * T * C3;
    const float* q = qkv + head0;
    const float* k = q + C;
    float* dq = dqkv + head0;
    float* dk = dq + C;
    float* dv = dq + 2 * C;
    const float* ds = datt_scratch + int64_t{b} * NH * TT;
    const float* a = att + int64_t{b} * NH * TT;
    const float* d = dout + int64_t{b} * T * C;
    // dQ += scale dS K;  dK += scale dS^T Q;  dV += P^T dO.
    gemm_batched(blas, stream, false, false, T, hs, T, scale, ds, T, TT, k, C3, hs, 1.0f, dq, C3,
                 hs, NH);
    gemm_batched(blas, stream, true, false, T, hs, T, scale, ds, T, TT, q, C3, hs, 1.0f, dk, C3, hs,
                 NH);
    gemm_batched(blas, stream, true, false, T, hs, T, 1.0f, a, T, TT, d, C, hs, 1.0f, dv, C3, hs,
                 NH);
  }
}

void gelu_forward(float* out, const float* inp, int64_t N, cudaStream_t stream) {
  mixed::gelu_forward(out, inp, N, DType::kF32, stream);
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t N,
                   cudaStream_t stream) {
  mixed::gelu_backward(dinp, inp, dout, N, DType::kF32, stream);
}

void fill_zero(float* x, int64_t N, cudaStream_t stream) {
  if (N == 0) return;
  DS_CUDA_CALL(cudaMemsetAsync(x, 0, sizeof(float) * static_cast<size_t>(N), stream));
}

void residual_forward(float* out, const float* a, const float* b, int64_t N, cudaStream_t stream) {
  mixed::residual_forward(out, a, b, N, DType::kF32, stream);
}

void add_inplace(float* dst, const float* src, int64_t N, cudaStream_t stream) {
  mixed::add_inplace(dst, src, N, DType::kF32, stream);
}

void softmax_cross_entropy_forward(float* losses, float* probs, const float* logits,
                                   const int32_t* targets, int N, int V, cudaStream_t stream) {
  if (N == 0) return;
  softmax_cross_entropy_forward_kernel<<<N, kCrossEntropyBlock, 0, stream>>>(losses, probs, logits,
                                                                             targets, V);
  DS_CUDA_LAUNCHED();
}

void softmax_cross_entropy_fused(float* losses, float* dlogits, const float* logits,
                                 const int32_t* targets, float dloss, int N, int V,
                                 cudaStream_t stream) {
  // The same passes and roundings as forward + backward.
  mixed::softmax_cross_entropy(losses, dlogits, logits, targets, dloss, N, V, V, DType::kF32,
                               stream);
}

void softmax_cross_entropy_backward(float* dlogits, const float* probs, const int32_t* targets,
                                    float dloss, int N, int V, cudaStream_t stream) {
  const int64_t total = int64_t{N} * V;
  if (total == 0) return;
  softmax_cross_entropy_backward_kernel<<<blocks_for(total), kBlock, 0, stream>>>(
      dlogits, probs, targets, dloss, N, V);
  DS_CUDA_LAUNCHED();
}

void sum_of_squares(double* result, double* parts_out, const void* x, DType dtype, int64_t N,
                    cudaStream_t stream) {
  // As many blocks as the data fills (each thread at least a few elements), at most the parts.
  const int64_t wanted = (N + int64_t{kSumBlock} * 4 - 1) / (int64_t{kSumBlock} * 4);
  const int parts = static_cast<int>(std::clamp<int64_t>(wanted, 1, kSumOfSquaresParts));
  dispatch_storage(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    sum_of_squares_parts_kernel<S>
        <<<parts, kSumBlock, 0, stream>>>(parts_out, static_cast<const S*>(x), N);
    DS_CUDA_LAUNCHED();
  });
  sum_parts_kernel<<<1, kSumBlock, 0, stream>>>(result, parts_out, parts);
  DS_CUDA_LAUNCHED();
}

void scale_inplace(float* x, float scale, int64_t N, cudaStream_t stream) {
  if (N == 0) return;
  scale_inplace_kernel<<<blocks_for(N), kBlock, 0, stream>>>(x, scale, N);
  DS_CUDA_LAUNCHED();
}

}  // namespace ds::tensor::cuda
