// CUDA versions of tensor/cpu/llama_kernels.h (RMSNorm, rotary embeddings, SwiGLU, the key/value
// heads of grouped-query attention), with the contracts of tensor/cuda/kernels.h: device pointers,
// a stream last, backwards accumulate except where the CPU's writes (rope_backward works in place,
// swiglu_backward writes dgate and dup), deterministic, fp32 only.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ds::tensor::cuda {

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps, cudaStream_t stream);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C, cudaStream_t stream);

// In place on rows of `heads` heads of `hs` channels (row n is position n % T), rotate_half
// pairing (i, i + hs/2), cos/sin tables [T, hs/2], rows `stride` floats apart.
void rope_forward(float* x, const float* cos, const float* sin, int N, int T, int heads, int hs,
                  int64_t stride, cudaStream_t stream);
void rope_backward(float* dx, const float* cos, const float* sin, int N, int T, int heads, int hs,
                   int64_t stride, cudaStream_t stream);

// out = silu(gate) * up; the backward WRITES dgate (which may alias dout) and dup.
void swiglu_forward(float* out, const float* gate, const float* up, int64_t N, cudaStream_t stream);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, int64_t N, cudaStream_t stream);

void expand_kv_heads(float* qkv, const float* q, const float* k, const float* v, int N, int NH,
                     int KVH, int hs, cudaStream_t stream);
void reduce_kv_heads(float* dq, float* dk, float* dv, const float* dqkv, int N, int NH, int KVH,
                     int hs, cudaStream_t stream);

}  // namespace ds::tensor::cuda
