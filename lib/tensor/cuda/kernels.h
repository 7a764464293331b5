// CUDA versions of the GPT kernels in tensor/cpu/kernels.h, on device pointers and a stream,
// with the same arguments in the same order (plus the stream last, and a Blas handle first for
// the ops that multiply matrices) and the same contracts:
// - Callers own and preallocate all device memory; nothing here allocates.
// - Every backward ACCUMULATES (+=) into its gradient outputs; softmax_cross_entropy_backward
//   WRITES dlogits (and may alias probs), as on the CPU.
// - Results are deterministic run to run on one GPU model: no float atomics; every reduction
//   (parameter gradients included) is done by a fixed set of threads in a fixed order.
// - Everything is queued on `stream` and returns without waiting; launch errors throw
//   ds::Error at once, faults inside a kernel at the next synchronising call.
// fp32 storage; bf16_kernels.h has the same kernels for bf16 and f16 storage.
//
// What the CPU checks on the host (token and target ranges) is not checked here: the data is
// on the device. Out-of-range tokens or targets are undefined behaviour.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "tensor/cpu/kernels.h"
#include "tensor/cuda/blas.h"
#include "tensor/cuda/device_buffer.h"

namespace ds::tensor::cuda {

using cpu::kIgnoreTarget;
using cpu::WeightLayout;

// out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:], or wte's row alone when wpe is nullptr.
void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                     int T, int C, cudaStream_t stream);

// The positions of a micro-batch grouped by token (llm.c's buckets), so that the embedding's
// backward can give every distinct token its own threads: built on the host from the tokens and
// copied to the device, where they are kept (the grouping is tensor/token_grouping.h's). Grows
// once to the largest batch.
class TokenBuckets {
 public:
  TokenBuckets() = default;
  ~TokenBuckets();
  TokenBuckets(const TokenBuckets&) = delete;
  TokenBuckets& operator=(const TokenBuckets&) = delete;

  // From the ids in host memory (the micro-batch the caller uploaded): the copy to the device is
  // queued on `stream`, and the grouping overlaps the work already queued there. It waits only
  // for the previous build's copy (done, as a rule, a micro-batch ago) and, when the batch is the
  // largest yet, for `stream`. `host_tokens` may be reused on return.
  void build_from_host(const int32_t* host_tokens, int64_t n, cudaStream_t stream);
  // From the ids in device memory: reads them back, which waits for everything queued on
  // `stream`.
  void build(const int32_t* device_tokens, int64_t n, cudaStream_t stream);

  // positions() lists [0, n) by token, ascending positions within a token; token u of the
  // distinct ones owns positions()[offsets()[u], offsets()[u + 1]).
  int64_t size() const { return size_; }  // the positions of the last build
  int distinct() const { return distinct_; }
  const int32_t* tokens() const { return device_.as<int32_t>(); }
  const int32_t* offsets() const { return tokens() + capacity_; }
  const int32_t* positions() const { return offsets() + capacity_ + 1; }

 private:
  size_t bytes() const { return sizeof(int32_t) * static_cast<size_t>(3 * capacity_ + 1); }

  std::vector<int32_t> device_copy_;  // build()'s ids, read back from the device
  // tokens | offsets | positions on the host, page-locked so that the copy to device_ is
  // asynchronous; `uploaded_` is recorded after it, and waited for before staging_ is rewritten.
  int32_t* staging_ = nullptr;
  cudaEvent_t uploaded_ = nullptr;
  DeviceBuffer device_;
  int64_t capacity_ = 0;
  int64_t size_ = 0;
  int distinct_ = 0;
};

// dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:] unless dwpe is nullptr. A thread
// per (distinct token, channel) adds that token's positions in order, and one per (position,
// channel) adds the batch rows in order: the CPU's summation order, so the sums are bitwise the
// CPU's, with no atomics. The ids are those `buckets` was last built from.
void encoder_backward(float* dwte, float* dwpe, const float* dout, int B, int T, int C,
                      const TokenBuckets& buckets, cudaStream_t stream);

// One warp per row. mean and rstd may be nullptr.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, float eps, cudaStream_t stream);
// One pass over dout and inp; `partials` is mixed::layernorm_partial_floats(C) floats of device
// memory (bf16_kernels.h). dinp = dresidual + the input gradient: dresidual == dinp accumulates,
// as every backward here; another buffer joins a residual connection's gradient (WRITTEN).
void layernorm_backward(float* dinp, const float* dresidual, float* dweight, float* dbias,
                        const float* dout, const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C, float* partials, cudaStream_t stream);

// out[N,OC] = inp[N,IC] · W (+ bias when not nullptr), through cuBLAS.
void matmul_forward(Blas& blas, float* out, const float* inp, const float* weight,
                    const float* bias, int N, int IC, int OC, WeightLayout layout,
                    cudaStream_t stream);
// dinp (nullable) += dout · W^T; dweight += the gradient in W's layout; dbias (nullable) +=
// column sums of dout (a fixed-order reduction, no atomics).
void matmul_backward(Blas& blas, float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int IC, int OC,
                     WeightLayout layout, cudaStream_t stream);

// Causal self-attention in the CPU's layout: qkv [B,T,3C], att [B,NH,T,T] (probabilities,
// zero above the diagonal), out [B,T,C]. Strided-batched GEMMs over the heads of each batch
// row and a warp-per-row softmax; the full T×T scores are computed (no flash-style tiling).
void attention_forward(Blas& blas, float* out, float* att, const float* qkv, int B, int T, int C,
                       int NH, cudaStream_t stream);
// dqkv += the gradient; datt_scratch [B,NH,T,T] is overwritten.
void attention_backward(Blas& blas, float* dqkv, float* datt_scratch, const float* dout,
                        const float* qkv, const float* att, int B, int T, int C, int NH,
                        cudaStream_t stream);

// GELU, tanh approximation. out may alias inp; dinp += gelu'(inp) dout.
void gelu_forward(float* out, const float* inp, int64_t N, cudaStream_t stream);
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t N,
                   cudaStream_t stream);

void fill_zero(float* x, int64_t N, cudaStream_t stream);

// out = a + b (out may alias a or b); dst += src.
void residual_forward(float* out, const float* a, const float* b, int64_t N, cudaStream_t stream);
void add_inplace(float* dst, const float* src, int64_t N, cudaStream_t stream);

// One block per row; the row sum is kept in double as on the CPU. probs may alias logits.
void softmax_cross_entropy_forward(float* losses, float* probs, const float* logits,
                                   const int32_t* targets, int N, int V, cudaStream_t stream);
// dlogits = (probs - onehot(targets)) * dloss, 0 for ignored rows. WRITES; may alias probs.
void softmax_cross_entropy_backward(float* dlogits, const float* probs, const int32_t* targets,
                                    float dloss, int N, int V, cudaStream_t stream);
// Both in one pass, dlogits WRITTEN with the backward's roundings; may alias logits.
void softmax_cross_entropy_fused(float* losses, float* dlogits, const float* logits,
                                 const int32_t* targets, float dloss, int N, int V,
                                 cudaStream_t stream);

// *result = sum of x^2, in double (one double of device memory), x stored as `dtype` and widened
// to fp32 first. `parts` is kSumOfSquaresParts
// doubles of device memory: up to that many blocks each sum a fixed strided part into parts[block],
// then one block adds the parts in order, so the sum is the same on every run and the whole GPU
// reads x.
inline constexpr int kSumOfSquaresParts = 512;
void sum_of_squares(double* result, double* parts, const void* x, DType dtype, int64_t N,
                    cudaStream_t stream);
// x *= scale.
void scale_inplace(float* x, float scale, int64_t N, cudaStream_t stream);

}  // namespace ds::tensor::cuda
