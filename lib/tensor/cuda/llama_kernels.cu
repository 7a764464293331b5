// The Llama kernels of tensor/cpu/llama_kernels.h on the GPU, in the shapes of kernels.cu.
#include <cuda_runtime.h>

#include "tensor/cuda/kernel_helpers.cuh"
#include "tensor/cuda/llama_kernels.h"

namespace ds::tensor::cuda {

using namespace detail;

namespace {

__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp,
                                       const float* weight, int N, int C, float eps) {
  const int n = warp_row();
  if (n >= N) return;
  const int lane = threadIdx.x % kWarp;
  const float* x = inp + int64_t{n} * C;
  float* y = out + int64_t{n} * C;
  float sq = 0.0f;
  for (int c = lane; c < C; c += kWarp) sq += x[c] * x[c];
  const float s = 1.0f / sqrtf(warp_sum(sq) / C + eps);
  for (int c = lane; c < C; c += kWarp) y[c] = x[c] * s * weight[c];
  if (lane == 0 && rstd != nullptr) rstd[n] = s;
}

__global__ void rmsnorm_backward_input_kernel(float* dinp, const float* dout, const float* inp,
                                              const float* weight, const float* rstd, int N,
                                              int C) {
  const int n = warp_row();
  if (n >= N) return;
  const int lane = threadIdx.x % kWarp;
  const float* x = inp + int64_t{n} * C;
  const float* d = dout + int64_t{n} * C;
  float* di = dinp + int64_t{n} * C;
  const float s = rstd[n];
  // y = xhat w with xhat = x s: dx = s (d w - xhat mean(d w xhat)).
  float dot = 0.0f;
  for (int c = lane; c < C; c += kWarp) dot += d[c] * weight[c] * x[c] * s;
  dot = warp_sum(dot) / C;
  for (int c = lane; c < C; c += kWarp) di[c] += s * (d[c] * weight[c] - x[c] * s * dot);
}

struct RmsnormWeightTerm {
  const float* dout;
  const float* inp;
  const float* rstd;
  int C;
  __device__ float operator()(int n, int c) const {
    const int64_t i = int64_t{n} * C + c;
    return dout[i] * inp[i] * rstd[n];
  }
};

// A thread per (row, head, pair); sign -1 applies the transpose (the backward).
__global__ void rope_kernel(float* x, const float* cos, const float* sin, int N, int T, int heads,
                            int hs, int64_t stride, float sign) {
  const int half = hs / 2;
  const int64_t i = element();
  if (i >= int64_t{N} * heads * half) return;
  const int pair = static_cast<int>(i % half);
  const int h = static_cast<int>((i / half) % heads);
  const int64_t n = i / (int64_t{half} * heads);
  const int64_t table = (n % T) * half + pair;
  const float c = cos[table];
  const float s = sign * sin[table];
  float* a = x + n * stride + int64_t{h} * hs + pair;
  float* b = a + half;
  const float ai = *a;
  const float bi = *b;
  *a = ai * c - bi * s;
  *b = bi * c + ai * s;
}

__device__ inline float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, int64_t N) {
  const int64_t i = element();
  if (i >= N) return;
  const float g = gate[i];
  out[i] = g * sigmoid(g) * up[i];
}

__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout,
                                       const float* gate, const float* up, int64_t N) {
  const int64_t i = element();
  if (i >= N) return;
  // Everything read before dgate (which may be dout) is written.
  const float g = gate[i];
  const float d = dout[i];
  const float u = up[i];
  const float sig = sigmoid(g);
  dup[i] = d * g * sig;
  dgate[i] = d * u * sig * (1.0f + g * (1.0f - sig));
}

// A thread per element of the expanded qkv row: q copied, each query head's k/v from its
// key/value head.
__global__ void expand_kv_heads_kernel(float* qkv, const float* q, const float* k, const float* v,
                                       int N, int NH, int KVH, int hs) {
  const int64_t C = int64_t{NH} * hs, KV = int64_t{KVH} * hs;
  const int64_t i = element();
  if (i >= int64_t{N} * 3 * C) return;
  const int64_t n = i / (3 * C), j = i % (3 * C);
  if (j < C) {
    qkv[i] = q[n * C + j];
    return;
  }
  const int64_t within = (j - C) % C;  // channel among the query heads
  const int64_t head = within / hs, group = NH / KVH;
  const int64_t from = n * KV + (head / group) * hs + within % hs;
  qkv[i] = j < 2 * C ? k[from] : v[from];
}

// A thread per element of dq, dk and dv; a key/value head sums its query heads in head
// order (the CPU's order).
__global__ void reduce_kv_heads_kernel(float* dq, float* dk, float* dv, const float* dqkv, int N,
                                       int NH, int KVH, int hs) {
  const int64_t C = int64_t{NH} * hs, KV = int64_t{KVH} * hs;
  const int64_t per_row = C + 2 * KV;
  const int64_t i = element();
  if (i >= int64_t{N} * per_row) return;
  const int64_t n = i / per_row, j = i % per_row;
  const float* row = dqkv + n * 3 * C;
  if (j < C) {
    dq[n * C + j] = row[j];
    return;
  }
  const bool is_k = j < C + KV;
  const int64_t within = is_k ? j - C : j - C - KV;  // channel among the key/value heads
  const int64_t kv_head = within / hs, channel = within % hs, group = NH / KVH;
  const float* part = row + (is_k ? C : 2 * C);
  float sum = 0.0f;
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) sum += part[h * hs + channel];
  (is_k ? dk : dv)[n * KV + within] = sum;
}

void rotate(float* x, const float* cos, const float* sin, int N, int T, int heads, int hs,
            int64_t stride, float sign, cudaStream_t stream) {
  DS_CUDA_REQUIRE(hs % 2 == 0 && T > 0 && stride >= int64_t{heads} * hs);
  const int64_t total = int64_t{N} * heads * (hs / 2);
  if (total == 0) return;
  rope_kernel<<<blocks_for(total), kBlock, 0, stream>>>(x, cos, sin, N, T, heads, hs, stride, sign);
  DS_CUDA_LAUNCHED();
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps, cudaStream_t stream) {
  if (N == 0) return;
  rmsnorm_forward_kernel<<<blocks_for(N, kRowsPerBlock), kBlock, 0, stream>>>(out, rstd, inp,
                                                                              weight, N, C, eps);
  DS_CUDA_LAUNCHED();
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C, cudaStream_t stream) {
  if (N == 0) return;
  rmsnorm_backward_input_kernel<<<blocks_for(N, kRowsPerBlock), kBlock, 0, stream>>>(
      dinp, dout, inp, weight, rstd, N, C);
  DS_CUDA_LAUNCHED();
  column_sum(dweight, N, C, RmsnormWeightTerm{dout, inp, rstd, C}, stream);
}

void rope_forward(float* x, const float* cos, const float* sin, int N, int T, int heads, int hs,
                  int64_t stride, cudaStream_t stream) {
  rotate(x, cos, sin, N, T, heads, hs, stride, 1.0f, stream);
}

void rope_backward(float* dx, const float* cos, const float* sin, int N, int T, int heads, int hs,
                   int64_t stride, cudaStream_t stream) {
  rotate(dx, cos, sin, N, T, heads, hs, stride, -1.0f, stream);
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t N,
                    cudaStream_t stream) {
  if (N == 0) return;
  swiglu_forward_kernel<<<blocks_for(N), kBlock, 0, stream>>>(out, gate, up, N);
  DS_CUDA_LAUNCHED();
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, int64_t N, cudaStream_t stream) {
  if (N == 0) return;
  swiglu_backward_kernel<<<blocks_for(N), kBlock, 0, stream>>>(dgate, dup, dout, gate, up, N);
  DS_CUDA_LAUNCHED();
}

void expand_kv_heads(float* qkv, const float* q, const float* k, const float* v, int N, int NH,
                     int KVH, int hs, cudaStream_t stream) {
  DS_CUDA_REQUIRE(KVH > 0 && NH % KVH == 0);
  const int64_t total = int64_t{N} * 3 * NH * hs;
  if (total == 0) return;
  expand_kv_heads_kernel<<<blocks_for(total), kBlock, 0, stream>>>(qkv, q, k, v, N, NH, KVH, hs);
  DS_CUDA_LAUNCHED();
}

void reduce_kv_heads(float* dq, float* dk, float* dv, const float* dqkv, int N, int NH, int KVH,
                     int hs, cudaStream_t stream) {
  DS_CUDA_REQUIRE(KVH > 0 && NH % KVH == 0);
  const int64_t total = int64_t{N} * (NH + 2 * KVH) * hs;
  if (total == 0) return;
  reduce_kv_heads_kernel<<<blocks_for(total), kBlock, 0, stream>>>(dq, dk, dv, dqkv, N, NH, KVH,
                                                                   hs);
  DS_CUDA_LAUNCHED();
}

}  // namespace ds::tensor::cuda
