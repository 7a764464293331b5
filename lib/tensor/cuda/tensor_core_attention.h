// Flash-style causal attention (flash_attention.h's contracts) with its products on the tensor
// cores, for bf16 runs: each block holds 64 rows of one side (queries, or keys in the dK/dV
// kernel) and walks the other side in 64-row tiles, and its warps multiply 16-row slices with
// mma.sync's 16x8x16 bf16 products, accumulating in fp32, the scores and accumulators in registers
// (FlashAttention-2's scheme, Dao 2023). Q, K, V, dout, and the probabilities and their gradients
// are rounded to bf16 on their way into a product, as the materialised path's bf16 GEMMs round
// them (blas.h); the softmax, its statistics and every sum stay in fp32. The T x T scores never
// reach memory: per layer, attention reads and writes O(T) per row instead of O(T²).
//
// Deterministic like the rest of the CUDA ops: the backward's dQ and dK/dV come from two kernels
// that each own their rows (the scores are recomputed in both), so no atomics.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "tensor/cuda/device_buffer.h"

namespace ds::tensor::cuda {

// Head sizes the kernels take: multiples of the fragment's 16, up to 128. The GPU must also
// have bf16 tensor cores (compute capability 8.0 on) and, per block, the shared memory below:
// up to 103 KiB at head size 128 (55 KiB at 64), more than consumer Ampere and Ada cards offer
// (99 KiB).
bool tensor_core_attention_supports(int C, int NH);
size_t tensor_core_attention_shared_bytes(int C, int NH);

// The kernels read bf16 operands in place: a bf16 qkv [B,T,3C] and dout [B,T,C] (16-byte
// aligned). The fp32 entry points (the Ops contracts, for any caller) first round qkv and dout into
// such copies, in a workspace owned here that grows to the largest shape once (B·T·4C bf16 for a
// backward), so after the first step nothing is allocated; the bf16 ones (the bf16 attention
// block's, bf16_attention_block.h) read their operands where they are. One per stream; not
// thread-safe.
class TensorCoreAttention {
 public:
  using Bf16 = __nv_bfloat16;

  // out = softmax(scale Q Kᵀ, causal) V per head; lse[b,h,t] = log Σ_j exp(score_tj). Layouts as
  // flash_attention_forward's: qkv [B,T,3C], out [B,T,C], lse [B,NH,T].
  void forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
               cudaStream_t stream);
  // dqkv += the gradient of out (dout) with respect to qkv; `row_dot` [B,NH,T] is scratch.
  void backward(float* dqkv, float* row_dot, const float* dout, const float* qkv, const float* out,
                const float* lse, int B, int T, int C, int NH, cudaStream_t stream);

  // The same on bf16 tensors, every one 16-byte aligned; out and dqkv are WRITTEN (rounded once
  // from the fp32 results).
  void forward(Bf16* out, float* lse, const Bf16* qkv, int B, int T, int C, int NH,
               cudaStream_t stream);
  void backward(Bf16* dqkv, float* row_dot, const Bf16* dout, const Bf16* qkv, const Bf16* out,
                const float* lse, int B, int T, int C, int NH, cudaStream_t stream);

 private:
  DeviceBuffer operands_;
};

}  // namespace ds::tensor::cuda
