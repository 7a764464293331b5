// The kernels of tensor/cuda/kernels.h that exist in fp32 only, apart from their launches
// (kernels.cu) so that the tests can also build them against the CPU emulation of CUDA
// (test/emulated_cuda/): the materialised attention's causal softmax and its backward, the
// cross-entropy's separate forward (keeping the probabilities, for evaluation and sampling) and
// backward, scaling, and the two-level sum of squares behind the gradient norm. The model's
// storage-generic kernels, and the helpers these use, are op_kernels.cuh's. These are not
// templates: include this header in one translation unit of a program only (kernels.cu; a test).
#pragma once

#include "tensor/cuda/op_kernels.cuh"

namespace ds::tensor::cuda::op_kernels {

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

__global__ void scale_inplace_kernel(float* x, float scale, int64_t N) {
  const int64_t i = element();
  if (i < N) x[i] *= scale;
}

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
  const RowStatistics row = row_statistics(x, V, shared_max, shared_sum);
  const float maxv = row.max;
  const double sum = row.sum;
  // As the fused kernel rounds it (op_kernels.cuh). Each element is read and then written by the
  // same thread, so aliasing is safe.
  const float inv = static_cast<float>(1.0 / sum);
  for (int i = threadIdx.x; i < V; i += blockDim.x) p[i] = __fmul_rn(expf(x[i] - maxv), inv);
  if (threadIdx.x == 0) {
    losses[n] = ignored ? 0.0f : static_cast<float>(log(sum) + double(maxv) - double(target_logit));
  }
}

__global__ void softmax_cross_entropy_backward_kernel(float* dlogits, const float* probs,
                                                      const int32_t* targets, float dloss,
                                                      int64_t N, int V) {
  const int64_t i = element();
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
// order (the threads' sums combined by block_reduce's fixed tree). x is stored as S (a 16-bit
// gradient widened exactly).
template <typename S>
__global__ void __launch_bounds__(kSumBlock)
    sum_of_squares_parts_kernel(double* parts, const S* x, int64_t N) {
  __shared__ double shared[kWarp];
  double sum = 0.0;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < N; i += stride) {
    const float v = load(x, i);
    sum += double(v) * v;
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
