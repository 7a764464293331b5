// CPU kernels for Llama-style models (RMSNorm, rotary position embeddings, SwiGLU; the token
// embedding without positions is kernels.h's encoder with no wpe), with the contracts of kernels.h:
// callers preallocate, backwards accumulate (+=) into gradients, results are deterministic for a
// thread count.
#pragma once

#include <cstdint>

namespace ds::tensor::cpu {

// Rows of C: out = inp * rsqrt(mean(inp^2) + eps) * weight (Hugging Face's LlamaRMSNorm).
// rstd (N) is saved for the backward (nullable when none follows).
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C);

// Rotary embeddings in place on rows of `heads` heads of `hs` channels (row n is position
// n % T), Hugging Face's rotate_half convention: channel i pairs with i + hs/2,
//   x'[i] = x[i] cos - x[i+hs/2] sin,  x'[i+hs/2] = x[i+hs/2] cos + x[i] sin,
// with cos/sin tables [T, hs/2]. `stride` is the row length in floats (>= heads*hs).
void rope_forward(float* x, const float* cos, const float* sin, int N, int T, int heads, int hs,
                  int64_t stride);
// The gradient through the rotation (its transpose), in place on dx.
void rope_backward(float* dx, const float* cos, const float* sin, int N, int T, int heads, int hs,
                   int64_t stride);

// SwiGLU: out = silu(gate) * up, silu(g) = g * sigmoid(g).
void swiglu_forward(float* out, const float* gate, const float* up, int64_t N);
// From dout (which dgate may alias): dgate = dout * up * silu'(gate), dup = dout * silu(gate).
// WRITES (=) both, so that the caller can reuse dout's memory for dgate.
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, int64_t N);

// Grouped-query attention: qkv [N, 3C] (C = NH*hs) gets q [N, C] as is and each of the KVH
// key/value heads of k and v [N, KVH*hs] copied to the NH/KVH query heads that share it, in the
// layout attention_forward reads.
void expand_kv_heads(float* qkv, const float* q, const float* k, const float* v, int N, int NH,
                     int KVH, int hs);
// Its gradient: dq = the q part of dqkv; dk, dv = each key/value head's query heads summed in
// head order. WRITES (=) all three.
void reduce_kv_heads(float* dq, float* dk, float* dv, const float* dqkv, int N, int NH, int KVH,
                     int hs);

}  // namespace ds::tensor::cpu
