// Layernorm's forward and backward with each row held in registers, for the widths GPT models
// use: a warp per row, lane l holding the row's octets (8 neighbouring elements) l, l + 32, ...,
// at most kMaxLaneOctets of them, read and written in 16-byte loads and stores. Each row crosses
// memory once, where op_kernels.cuh's layernorm kernels read it again for each pass, a column
// (4 bytes of fp32, 2 of bf16) per lane per load, and the backward keeps its parameter-gradient
// sums in registers rather than in shared memory. They apply where C is a multiple of 8, at most
// 8 · 32 · kMaxLaneOctets, and every tensor starts 16-byte aligned (layernorm_rows_apply); the
// launches (bf16_kernels.cu) fall back to op_kernels.cuh's elsewhere.
//
// The arithmetic is op_kernels.cuh's (fp32 throughout, stores rounded once to S), summed in
// another fixed order: a lane's octets in turn, then the warp's butterfly.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "tensor/cuda/device_primitives.cuh"
#include "tensor/cuda/storage_types.cuh"

namespace ds::tensor::cuda::op_kernels {

using detail::Chunk;
using detail::kWarp;

constexpr int kOctet = 8;
constexpr int kMaxLaneOctets = 4;  // a lane's octets at most: C <= 1024
constexpr int kRowOctetsPerWarp = kWarp * kOctet;

// Whether the row kernels take rows of C with these tensors (nullptr: absent).
inline bool layernorm_rows_apply(int C, std::initializer_list<const void*> tensors) {
  if (C <= 0 || C % kOctet != 0 || C > kMaxLaneOctets * kRowOctetsPerWarp) return false;
  for (const void* t : tensors) {
    if (t != nullptr && reinterpret_cast<uintptr_t>(t) % 16 != 0) return false;
  }
  return true;
}
// Calls fn(std::integral_constant<int, K>{}) with K the octets a lane holds of a row of C
// (layernorm_rows_apply: 1 to kMaxLaneOctets).
template <typename Fn>
void with_lane_octets(int C, Fn&& fn) {
  detail::with_constant<kMaxLaneOctets>((C + kRowOctetsPerWarp - 1) / kRowOctetsPerWarp, fn);
}

// Octet `o` of a row, widened to fp32 (one 16-byte load of bf16/f16, two of fp32), and stored.
template <typename S>
__device__ inline void load_octet(const S* row, int o, float (&v)[kOctet]) {
  constexpr int kCount = Chunk<S>::kCount;
  const Chunk<S>* chunks = reinterpret_cast<const Chunk<S>*>(row + o * kOctet);
#pragma unroll
  for (int c = 0; c < kOctet / kCount; ++c) {
    const Chunk<S> chunk = chunks[c];
#pragma unroll
    for (int k = 0; k < kCount; ++k) v[c * kCount + k] = detail::load(chunk.x, k);
  }
}
template <typename S>
__device__ inline void store_octet(S* row, int o, const float (&v)[kOctet]) {
  constexpr int kCount = Chunk<S>::kCount;
  Chunk<S>* chunks = reinterpret_cast<Chunk<S>*>(row + o * kOctet);
#pragma unroll
  for (int c = 0; c < kOctet / kCount; ++c) {
    Chunk<S> chunk;
#pragma unroll
    for (int k = 0; k < kCount; ++k) detail::store(chunk.x, k, v[c * kCount + k]);
    chunks[c] = chunk;
  }
}

// K = lane_octets(C). Launched as layernorm_forward_kernel: a warp per row, kRowsPerBlock a block.
template <int K, typename S, typename Out>
__global__ void layernorm_forward_rows_kernel(Out* out, float* mean, float* rstd, const S* inp,
                                              const S* weight, const S* bias, int N, int C,
                                              float eps) {
  const int n = detail::warp_row();
  if (n >= N) return;
  const int lane = threadIdx.x % kWarp;
  const int octets = C / kOctet;
  const S* x = inp + int64_t{n} * C;
  float v[K][kOctet] = {};  // (zeroed for the compiler: octets past the row go unread)
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    if (lane + j * kWarp >= octets) continue;
    load_octet(x, lane + j * kWarp, v[j]);
#pragma unroll
    for (int k = 0; k < kOctet; ++k) sum += v[j][k];
  }
  const float m = detail::warp_sum(sum) / C;
  // Two passes, as the CPU: the variance from squared deviations.
  float sq = 0.0f;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    if (lane + j * kWarp >= octets) continue;
#pragma unroll
    for (int k = 0; k < kOctet; ++k) {
      const float dev = v[j][k] - m;
      sq += dev * dev;
    }
  }
  const float s = 1.0f / sqrtf(detail::warp_sum(sq) / C + eps);
  Out* o = out + int64_t{n} * C;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    const int at = lane + j * kWarp;
    if (at >= octets) continue;
    float w[kOctet], b[kOctet];
    load_octet(weight, at, w);
    load_octet(bias, at, b);
#pragma unroll
    for (int k = 0; k < kOctet; ++k) v[j][k] = (v[j][k] - m) * s * w[k] + b[k];
    store_octet(o, at, v[j]);
  }
  if (lane == 0) {
    if (mean != nullptr) mean[n] = m;
    if (rstd != nullptr) rstd[n] = s;
  }
}

// The backward's blocks: kLayernormRowsWarps warps, each walking the block's rows `warps` apart
// and keeping its columns' parameter-gradient sums in registers; the warps then add theirs in warp
// order in shared memory (layernorm_rows_shared_bytes) and the block writes the totals to its row
// of `partials`, as layernorm_backward_kernel does (weight sums [blocks][C], then bias sums), for
// column_sum_kernel to finish. Blocks as LayernormBackwardLaunch(N, C, kLayernormRowsWarps,
// blocks): one wave of the blocks an SM holds at once, at most kLayernormBlocks.
//
// kHandOn: dinp is also handed on to the backward of the sublayer below, which would otherwise read
// it again: rounded to bf16 into dinp16 ([N, C], 16-byte aligned), and its column sums (the bias
// gradient of that sublayer's projection) after the bias sums in partials, [3][blocks][C]. Each
// warp adds its rows' dinp into a row of shared memory of its own (in registers they would cost
// the kernel a quarter of its occupancy), which the block then adds in warp order.
constexpr int kLayernormRowsWarps = 4;
inline size_t layernorm_rows_shared_bytes(int C, bool hand_on = false) {
  return sizeof(float) * (2 + (hand_on ? kLayernormRowsWarps : 0)) * size_t(C);
}

template <int K, typename S, typename G, bool kHandOn = false>
__global__ void __launch_bounds__(kLayernormRowsWarps* kWarp)
    layernorm_backward_rows_kernel(S* dinp, __nv_bfloat16* dinp16, const S* dresidual,
                                   float* partials, const G* dout, const S* inp, const S* weight,
                                   const float* mean, const float* rstd, int N, int C, int rows) {
  const int warps = static_cast<int>(blockDim.x) / kWarp;
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int octets = C / kOctet;
  float weight_sum[K][kOctet] = {}, bias_sum[K][kOctet] = {};
  // weight sums, bias sums, then (kHandOn) each warp's dinp sums
  float* sums = reinterpret_cast<float*>(detail::dynamic_shared_memory());
  float* dinp_sums = sums + (2 + warp) * C;
  if constexpr (kHandOn) {
    for (int c = lane; c < C; c += kWarp) dinp_sums[c] = 0.0f;
    __syncwarp();
  }
  const int first = static_cast<int>(blockIdx.x) * rows;
  const int end = min(N, first + rows);
  for (int n = first + warp; n < end; n += warps) {
    const S* x = inp + int64_t{n} * C;
    const G* d = dout + int64_t{n} * C;
    const float m = mean[n];
    const float s = rstd[n];
    // norm = x̂; wd = weight · dout. The parameter gradients' terms need no row statistics.
    float norm[K][kOctet] = {},
          wd[K][kOctet] = {};  // (zeroed for the compiler: octets past the row go unread)
    float dnorm = 0.0f;
    float dnorm_norm = 0.0f;
#pragma unroll
    for (int j = 0; j < K; ++j) {
      const int at = lane + j * kWarp;
      if (at >= octets) continue;
      float w[kOctet];
      load_octet(x, at, norm[j]);
      load_octet(d, at, wd[j]);
      load_octet(weight, at, w);
#pragma unroll
      for (int k = 0; k < kOctet; ++k) {
        norm[j][k] = (norm[j][k] - m) * s;
        weight_sum[j][k] += wd[j][k] * norm[j][k];
        bias_sum[j][k] += wd[j][k];
        wd[j][k] *= w[k];
        dnorm += wd[j][k];
        dnorm_norm += wd[j][k] * norm[j][k];
      }
    }
    const float dnorm_mean = detail::warp_sum(dnorm) / C;
    const float dnorm_norm_mean = detail::warp_sum(dnorm_norm) / C;
    // dinp = dresidual + the input gradient (dresidual == dinp: accumulates).
    const S* dr = dresidual + int64_t{n} * C;
    S* di = dinp + int64_t{n} * C;
#pragma unroll
    for (int j = 0; j < K; ++j) {
      const int at = lane + j * kWarp;
      if (at >= octets) continue;
      float grad[kOctet];
      load_octet(dr, at, grad);
#pragma unroll
      for (int k = 0; k < kOctet; ++k) {
        grad[k] += (wd[j][k] - dnorm_mean - norm[j][k] * dnorm_norm_mean) * s;
      }
      store_octet(di, at, grad);
      if constexpr (kHandOn) {
        store_octet(dinp16 + int64_t{n} * C, at, grad);
#pragma unroll
        for (int k = 0; k < kOctet; ++k) dinp_sums[at * kOctet + k] += grad[k];
      }
    }
  }
  for (int w = 0; w < warps; ++w) {
    if (warp == w) {
#pragma unroll
      for (int j = 0; j < K; ++j) {
        const int at = lane + j * kWarp;
        if (at >= octets) continue;
#pragma unroll
        for (int k = 0; k < kOctet; ++k) {
          const int c = at * kOctet + k;
          sums[c] = w == 0 ? weight_sum[j][k] : sums[c] + weight_sum[j][k];
          sums[C + c] = w == 0 ? bias_sum[j][k] : sums[C + c] + bias_sum[j][k];
        }
      }
    }
    __syncthreads();
  }
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    partials[int64_t{blockIdx.x} * C + c] = sums[c];
    partials[(int64_t{gridDim.x} + blockIdx.x) * C + c] = sums[C + c];
    if constexpr (kHandOn) {
      float total = 0.0f;
      for (int w = 0; w < warps; ++w) total += sums[(2 + w) * C + c];
      partials[(2 * int64_t{gridDim.x} + blockIdx.x) * C + c] = total;
    }
  }
}

}  // namespace ds::tensor::cuda::op_kernels
