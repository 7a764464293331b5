// The GPT kernels of tensor/cpu/kernels.h on the GPU (kernels.h), apart from their launches
// (kernels.cu) so that the tests can also build them against the CPU emulation of CUDA
// (test/emulated_cuda/). Element-wise ops take a thread per element; row ops (normalisations,
// softmax) a warp per row, or a block per row where rows are long (cross-entropy over the
// vocabulary); parameter gradients reduce through detail::column_sum_kernel.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/cpu/kernels.h"
#include "tensor/cuda/device_primitives.cuh"

namespace ds::tensor::cuda::op_kernels {

using namespace detail;
using cpu::kIgnoreTarget;

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;

__device__ inline int warp_row() {
  return static_cast<int>(blockIdx.x) * kRowsPerBlock + static_cast<int>(threadIdx.x) / kWarp;
}

__global__ void encoder_forward_kernel(float* out, const int32_t* tokens, const float* wte,
                                       const float* wpe, int64_t BT, int T, int C) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= BT * C) return;
  const int64_t bt = i / C;
  const int c = static_cast<int>(i % C);
  const int t = static_cast<int>(bt % T);
  const float position = wpe != nullptr ? wpe[int64_t{t} * C + c] : 0.0f;
  out[i] = wte[int64_t{tokens[bt]} * C + c] + position;
}

// A thread per (distinct token, channel): that token's positions in ascending order, as the
// CPU's loop meets them, so the sum is bitwise the CPU's.
__global__ void wte_backward_kernel(float* dwte, const float* dout, const int32_t* tokens,
                                    const int32_t* offsets, const int32_t* positions, int C) {
  const int u = blockIdx.x;
  const int c = static_cast<int>(blockIdx.y * blockDim.x + threadIdx.x);
  if (c >= C) return;
  float* row = dwte + int64_t{tokens[u]} * C;
  float sum = row[c];
  for (int i = offsets[u]; i < offsets[u + 1]; ++i) sum += dout[int64_t{positions[i]} * C + c];
  row[c] = sum;
}

// A thread per (position t, channel): the batch rows b = 0, 1, ... in order.
__global__ void wpe_backward_kernel(float* dwpe, const float* dout, int B, int T, int C) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= int64_t{T} * C) return;
  float sum = dwpe[i];
  for (int b = 0; b < B; ++b) sum += dout[int64_t{b} * T * C + i];
  dwpe[i] = sum;
}

__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                                         const float* weight, const float* bias, int N, int C,
                                         float eps) {
  const int n = warp_row();
  if (n >= N) return;
  const int lane = threadIdx.x % kWarp;
  const float* x = inp + int64_t{n} * C;
  float* o = out + int64_t{n} * C;
  float sum = 0.0f;
  for (int c = lane; c < C; c += kWarp) sum += x[c];
  const float m = warp_sum(sum) / C;
  // Two passes, as the CPU: the variance from squared deviations.
  float sq = 0.0f;
  for (int c = lane; c < C; c += kWarp) sq += (x[c] - m) * (x[c] - m);
  const float s = 1.0f / sqrtf(warp_sum(sq) / C + eps);
  for (int c = lane; c < C; c += kWarp) o[c] = (x[c] - m) * s * weight[c] + bias[c];
  if (lane == 0) {
    if (mean != nullptr) mean[n] = m;
    if (rstd != nullptr) rstd[n] = s;
  }
}

__global__ void layernorm_backward_input_kernel(float* dinp, const float* dout, const float* inp,
                                                const float* weight, const float* mean,
                                                const float* rstd, int N, int C) {
  const int n = warp_row();
  if (n >= N) return;
  const int lane = threadIdx.x % kWarp;
  const float* x = inp + int64_t{n} * C;
  const float* d = dout + int64_t{n} * C;
  float* di = dinp + int64_t{n} * C;
  const float m = mean[n];
  const float s = rstd[n];
  float dnorm = 0.0f;
  float dnorm_norm = 0.0f;
  for (int c = lane; c < C; c += kWarp) {
    const float wd = weight[c] * d[c];
    dnorm += wd;
    dnorm_norm += wd * (x[c] - m) * s;
  }
  const float dnorm_mean = warp_sum(dnorm) / C;
  const float dnorm_norm_mean = warp_sum(dnorm_norm) / C;
  for (int c = lane; c < C; c += kWarp) {
    const float norm = (x[c] - m) * s;
    di[c] += (weight[c] * d[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

struct LayernormWeightTerm {
  const float* dout;
  const float* inp;
  const float* mean;
  const float* rstd;
  int C;
  __device__ float operator()(int n, int c) const {
    const int64_t i = int64_t{n} * C + c;
    return dout[i] * (inp[i] - mean[n]) * rstd[n];
  }
};

struct RowsTerm {  // the matrix itself: column sums of dout
  const float* x;
  int C;
  __device__ float operator()(int n, int c) const { return x[int64_t{n} * C + c]; }
};

__global__ void broadcast_rows_kernel(float* out, const float* row, int64_t N, int C) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < N * C) out[i] = row[i % C];
}

// Causal softmax in place on rows of T scores (row r is query r % T): keys past the query get
// probability 0.
__global__ void causal_softmax_kernel(float* att, int64_t rows, int T) {
  const int64_t r = int64_t{blockIdx.x} * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;
  const int lane = threadIdx.x % kWarp;
  const int t = static_cast<int>(r % T);
  float* row = att + r * T;
  float maxv = -INFINITY;
  for (int j = lane; j <= t; j += kWarp) maxv = fmaxf(maxv, row[j]);
  maxv = warp_max(maxv);
  float sum = 0.0f;
  for (int j = lane; j <= t; j += kWarp) {
    const float e = expf(row[j] - maxv);
    row[j] = e;
    sum += e;
  }
  const float inv = 1.0f / warp_sum(sum);
  for (int j = lane; j < T; j += kWarp) row[j] = j <= t ? row[j] * inv : 0.0f;
}

// dS = P * (dP - sum_j P dP) in place on dP; zero above the diagonal.
__global__ void causal_softmax_backward_kernel(float* datt, const float* att, int64_t rows, int T) {
  const int64_t r = int64_t{blockIdx.x} * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;
  const int lane = threadIdx.x % kWarp;
  const int t = static_cast<int>(r % T);
  const float* p = att + r * T;
  float* g = datt + r * T;
  float dot = 0.0f;
  for (int j = lane; j <= t; j += kWarp) dot += p[j] * g[j];
  dot = warp_sum(dot);
  for (int j = lane; j < T; j += kWarp) g[j] = j <= t ? p[j] * (g[j] - dot) : 0.0f;
}

__device__ inline float gelu_tanh(float x) {
  return tanhf(kGeluScale * (x + kGeluCubic * x * x * x));
}

__global__ void gelu_forward_kernel(float* out, const float* inp, int64_t N) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const float x = inp[i];
  out[i] = 0.5f * x * (1.0f + gelu_tanh(x));
}

__global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, int64_t N) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const float x = inp[i];
  const float th = gelu_tanh(x);
  const float du = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
  const float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
  dinp[i] += grad * dout[i];
}

__global__ void residual_forward_kernel(float* out, const float* a, const float* b, int64_t N) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < N) out[i] = a[i] + b[i];
}

__global__ void add_inplace_kernel(float* dst, const float* src, int64_t N) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < N) dst[i] += src[i];
}

__global__ void scale_inplace_kernel(float* x, float scale, int64_t N) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < N) x[i] *= scale;
}

constexpr int kCrossEntropyBlock = 512;

__global__ void softmax_cross_entropy_forward_kernel(float* losses, float* probs,
                                                     const float* logits, const int32_t* targets,
                                                     int V) {
  __shared__ float shared_max[kWarp];
  __shared__ double shared_sum[kWarp];
  const int64_t n = blockIdx.x;
  const float* x = logits + n * V;
  float* p = probs + n * V;
  const int32_t target = targets[n];
  const bool ignored = target == kIgnoreTarget;
  // Read before p (which may be x) is overwritten: block_reduce below synchronises first.
  const float target_logit = ignored ? 0.0f : x[target];
  float maxv = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) maxv = fmaxf(maxv, x[i]);
  maxv = block_reduce(maxv, shared_max, Max{});
  // Each element is read and then written by the same thread, so aliasing is safe.
  double sum = 0.0;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float e = expf(x[i] - maxv);
    p[i] = e;
    sum += e;
  }
  sum = block_reduce(sum, shared_sum, Add{});
  const float inv = static_cast<float>(1.0 / sum);
  for (int i = threadIdx.x; i < V; i += blockDim.x) p[i] = __fmul_rn(p[i], inv);
  if (threadIdx.x == 0) {
    losses[n] = ignored ? 0.0f : static_cast<float>(log(sum) + double(maxv) - double(target_logit));
  }
}

__global__ void softmax_cross_entropy_backward_kernel(float* dlogits, const float* probs,
                                                      const int32_t* targets, float dloss,
                                                      int64_t N, int V) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= N * V) return;
  const int64_t n = i / V;
  const int v = static_cast<int>(i % V);
  const int32_t target = targets[n];
  if (target == kIgnoreTarget) {
    dlogits[i] = 0.0f;
    return;
  }
  // Rounded as the CPU does: p * dloss first, then the one-hot subtracted.
  const float d = __fmul_rn(probs[i], dloss);
  dlogits[i] = v == target ? d - dloss : d;
}

constexpr int kSumBlock = 1024;

// Block b sums elements b*kSumBlock + t, advancing by the whole grid: each part in a fixed
// order (the threads' sums combined by block_reduce's fixed tree).
__global__ void __launch_bounds__(kSumBlock)
    sum_of_squares_parts_kernel(double* parts, const float* x, int64_t N) {
  __shared__ double shared[kWarp];
  double sum = 0.0;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < N; i += stride) {
    sum += double(x[i]) * x[i];
  }
  sum = block_reduce(sum, shared, Add{});
  if (threadIdx.x == 0) parts[blockIdx.x] = sum;
}

// One block adds the parts, thread t taking parts t, t + blockDim.x, ...
__global__ void __launch_bounds__(kSumBlock)
    sum_parts_kernel(double* result, const double* parts, int count) {
  __shared__ double shared[kWarp];
  double sum = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) sum += parts[i];
  sum = block_reduce(sum, shared, Add{});
  if (threadIdx.x == 0) *result = sum;
}

}  // namespace ds::tensor::cuda::op_kernels
