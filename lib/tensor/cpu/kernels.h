// CPU kernels for GPT-style training, in the manner of llm.c's train_gpt2.c: plain loops over
// row-major float arrays, each fusing what one pass over memory can do, parallel with OpenMP;
// every matmul (including attention's) goes to OpenBLAS sgemm, which shares the OpenMP pool.
//
// Contracts shared by every function here:
// - Callers own and preallocate all memory; nothing here allocates.
// - Every backward ACCUMULATES (+=) into its gradient outputs, input and parameter gradients
//   alike, so residual branches and gradient accumulation need no extra copies. The one
//   exceptions are softmax_cross_entropy_backward and _fused, which write dlogits (see there).
// - Results are deterministic run to run for a fixed thread count: no float atomics;
//   reductions either belong to one thread or are combined in a fixed order.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace ds::tensor::cpu {

// out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:], or wte's row alone when wpe is nullptr (a
// model without learned positions, such as Llama). Tokens must be in [0, V).
void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                     int T, int C);
// dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:] unless dwpe is nullptr. Threads
// split the channels, so
// repeated tokens never collide and each sum runs in position order.
void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                      int T, int C);

// Rows of C: out = (inp - mean) * rstd * weight + bias. mean and rstd (N each) are saved for the
// backward; either may be nullptr when no backward follows.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, float eps);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int N, int C);

enum class WeightLayout {
  kInOut,  // weight[IC][OC], y = x W + b: Hugging Face GPT-2's Conv1D
  kOutIn,  // weight[OC][IC], y = x W^T + b: nn.Linear, and the tied embedding as LM head
};

// out[N,OC] = inp[N,IC] · W (+ bias[OC] when bias is not nullptr).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int IC, int OC, WeightLayout layout);
// dinp (nullable: the first layer's input needs no gradient) += dout · W^T;
// dweight += the gradient in the weight's own layout; dbias (nullable) += column sums of dout.
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int IC, int OC, WeightLayout layout);

// Causal multi-head self-attention. qkv is [B,T,3C] (q | k | v); head h uses channels
// [h*hs, (h+1)*hs) of each, hs = C/NH. att [B,NH,T,T] receives the softmax probabilities
// (zero above the diagonal) for the backward; out is [B,T,C]. Scores are scaled by 1/sqrt(hs).
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH);
// dqkv [B,T,3C] += the gradient; datt_scratch [B,NH,T,T] is overwritten.
void attention_backward(float* dqkv, float* datt_scratch, const float* dout, const float* qkv,
                        const float* att, int B, int T, int C, int NH);

// GELU with the tanh approximation, as GPT-2 and PyTorch's gelu(approximate='tanh'):
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). out may alias inp.
void gelu_forward(float* out, const float* inp, int64_t N);
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t N);
// d = gelu'(inp) * d: the backward WRITTEN over the output gradient (after a GEMM wrote it).
void gelu_backward_inplace(float* d, const float* inp, int64_t N);

// x = 0 (the gradient buffers a backward accumulates into start from it).
void fill_zero(float* x, int64_t N);

// out = a + b (out may alias a or b); dst += src.
void residual_forward(float* out, const float* a, const float* b, int64_t N);
void add_inplace(float* dst, const float* src, int64_t N);

// A target that takes no part in the loss (a padded or prompt position): PyTorch's
// ignore_index.
inline constexpr int32_t kIgnoreTarget = -100;

// Per row of V logits: losses[n] = logsumexp(logits[n]) - logits[n][targets[n]], and
// probs = softmax(logits), computed with the row maximum subtracted. Targets must be in
// [0, V) or kIgnoreTarget, whose loss is 0. probs may alias logits (the logits are then
// overwritten), which saves N*V floats — 200 MB for GPT-2's vocabulary at B*T = 1024.
void softmax_cross_entropy_forward(float* losses, float* probs, const float* logits,
                                   const int32_t* targets, int N, int V);
// dlogits = (probs - onehot(targets)) * dloss (0 for ignored rows). WRITES (=) rather than
// accumulates, so that
// dlogits may alias probs (and so the logits) and the N*V buffer is reused in place.
// dloss is the same for every position, e.g. 1 / (N * grad_accumulation_steps).
void softmax_cross_entropy_backward(float* dlogits, const float* probs, const int32_t* targets,
                                    float dloss, int N, int V);
// Both in one pass over the logits when dloss is known at the forward (training): the losses,
// and dlogits WRITTEN as the backward would write them from the forward's probabilities, bit
// for bit. dlogits may alias logits.
void softmax_cross_entropy_fused(float* losses, float* dlogits, const float* logits,
                                 const int32_t* targets, float dloss, int N, int V);

// Sum of x^2 in double (for the gradient norm); x *= scale.
double sum_of_squares(const float* x, int64_t N);
// The same over x stored as `dtype`, each element widened to fp32 first.
double sum_of_squares(const void* x, DType dtype, int64_t N);
void scale_inplace(float* x, float scale, int64_t N);

}  // namespace ds::tensor::cpu
