// Causal self-attention without the T×T scores (FlashAttention's idea: Dao et al., 2022): the
// forward walks the keys in tiles, keeping a running maximum and sum of exponentials per query
// row (the online softmax), and stores only each row's log-sum-exp; the backward recomputes the
// probabilities from it. Memory per layer falls from B·NH·T² floats to B·NH·T, which is what
// makes long sequences fit.
//
// Same layout and results as cuda::attention_forward/backward (kernels.h), in fp32 throughout:
// qkv [B,T,3C], out [B,T,C], lse [B,NH,T]; head size C/NH at most kFlashMaxHeadSize. One warp
// per row: for a query (or key) row, lane l takes key (or query) l of each 32-row tile for the
// dot products, and head dimensions l, l+32, ... for the row's outputs, so every sum runs in a
// fixed order and results repeat bit for bit. The backward needs no atomics: one kernel
// accumulates dQ per query row, another dK and dV per key row.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace ds::tensor::cuda {

constexpr int kFlashMaxHeadSize = 128;

// Whether the kernels take C channels in NH heads: whole heads of at most kFlashMaxHeadSize.
bool flash_attention_supports(int C, int NH);

// out = softmax(scale Q Kᵀ, causal) V per head; lse[b,h,t] = log Σ_j exp(score_tj).
void flash_attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                             cudaStream_t stream);
// dqkv += the gradient of out (dout) with respect to qkv. `out` and `lse` are the forward's;
// `row_dot` [B,NH,T] is scratch (each row's dout·out), overwritten.
void flash_attention_backward(float* dqkv, float* row_dot, const float* dout, const float* qkv,
                              const float* out, const float* lse, int B, int T, int C, int NH,
                              cudaStream_t stream);
// row_dot[b,h,t] = dout_t · out_t over head h's dimensions: the backward's D (softmax's
// Σ_j p_tj dp_tj), which both flash-style backwards compute first.
void attention_row_dot(float* row_dot, const float* dout, const float* out, int B, int T, int C,
                       int NH, cudaStream_t stream);
// The same from bf16 rows (the bf16 attention block's), summed in fp32.
void attention_row_dot(float* row_dot, const __nv_bfloat16* dout, const __nv_bfloat16* out, int B,
                       int T, int C, int NH, cudaStream_t stream);

}  // namespace ds::tensor::cuda
