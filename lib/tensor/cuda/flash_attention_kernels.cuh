// The kernels of flash_attention.h, apart from their launches (flash_attention.cu) so that the
// tests can also build them against the CPU emulation of CUDA (test/emulated_cuda/). Each block
// holds kRows warps, one row (query or key) each, and walks the other side's rows in tiles of kTile
// = 32 that the whole block loads into shared memory: row r of a tile sits at stride kStride (= 1
// mod 32), so lane l reading row l of the tile at the same column hits bank (l + column) % 32,
// never another lane's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/cuda/device_primitives.cuh"
#include "tensor/cuda/flash_attention.h"
#include "tensor/cuda/storage_types.cuh"

namespace ds::tensor::cuda::flash {

using detail::kBlock;
using detail::kRowsPerBlock;
using detail::kWarp;
using detail::warp_max;
using detail::warp_sum;

constexpr int kTile = kWarp;                         // rows per shared-memory tile
constexpr int kRows = kRowsPerBlock;                 // warps (rows) per block: 8
constexpr int kThreads = kBlock;                     // 256
constexpr int kStride = kFlashMaxHeadSize + 1;       // a tile row in shared memory
constexpr int kPerLane = kFlashMaxHeadSize / kWarp;  // head dimensions a lane accumulates
constexpr unsigned kFullMask = 0xffffffffu;

// Where head h's q (part 0), k (1) or v (2) of row t of batch row b starts in qkv.
struct Heads {
  const float* qkv;
  int T, C, hs;
  __device__ const float* row(int b, int t, int part, int h) const {
    return qkv + (int64_t{b} * T + t) * 3 * C + int64_t{part} * C + int64_t{h} * hs;
  }
};

// Where a thread works: batch row b and head h (the grid's z and y), its warp and lane, the
// block's first row, and its warp's row (query or key), active while inside the sequence.
struct Place {
  int b, h, warp, lane, first, row;
  bool active;
  __device__ explicit Place(int T)
      : b(blockIdx.z),
        h(blockIdx.y),
        warp(threadIdx.x / kWarp),
        lane(threadIdx.x % kWarp),
        first(blockIdx.x * kRows),
        row(first + warp),
        active(row < T) {}
};

// Rows first..first+kTile-1 of `part` (zeros past T) into tile[kTile][kStride]; the whole block
// calls it.
__device__ inline void load_tile(float (*tile)[kStride], const Heads& x, int b, int h, int part,
                                 int first) {
  for (int e = threadIdx.x; e < kTile * x.hs; e += blockDim.x) {
    const int r = e / x.hs, d = e % x.hs;
    const int t = first + r;
    tile[r][d] = t < x.T ? x.row(b, t, part, h)[d] : 0.0f;
  }
}

// Σ_d a[d] b[d] over the head's dimensions, in order.
__device__ inline float dot(const float* a, const float* b, int hs) {
  float sum = 0.0f;
  for (int d = 0; d < hs; ++d) sum += a[d] * b[d];
  return sum;
}

// acc[r] (dimension lane + 32 r) += Σ_src weight_src · tile[src][dimension], src in lane order.
__device__ inline void add_weighted_rows(float (&acc)[kPerLane], float weight,
                                         const float (*tile)[kStride], int hs) {
  const int lane = threadIdx.x % kWarp;
  for (int src = 0; src < kTile; ++src) {
    const float w = __shfl_sync(kFullMask, weight, src);
    for (int r = 0; r < kPerLane; ++r) {
      const int d = lane + r * kWarp;
      if (d < hs) acc[r] += w * tile[src][d];
    }
  }
}

// For a block of query rows first .. first+kRows-1: loads each tile of the keys they see (keys 0
// up to the block's last row) into k_tile and v_tile, and calls visit(j0) with the tile's first
// key, on every thread, between the block's barriers.
template <typename Visit>
__device__ void for_each_key_tile(const Heads& x, int b, int h, int first, float (*k_tile)[kStride],
                                  float (*v_tile)[kStride], Visit&& visit) {
  const int last = min(first + kRows, x.T) - 1;
  for (int j0 = 0; j0 <= last; j0 += kTile) {
    __syncthreads();  // the previous tile is used up (and the rows the caller stored, written)
    load_tile(k_tile, x, b, h, 1, j0);
    load_tile(v_tile, x, b, h, 2, j0);
    __syncthreads();
    visit(j0);
  }
}

// Grid (query blocks, NH, B); warp w of block x takes query row x·kRows + w.
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(float* out, float* lse, Heads x, int NH, float scale) {
  __shared__ float k_tile[kTile][kStride];
  __shared__ float v_tile[kTile][kStride];
  __shared__ float q_rows[kRows][kFlashMaxHeadSize];
  const Place at(x.T);
  const int b = at.b, h = at.h, warp = at.warp, lane = at.lane, first = at.first, i = at.row;
  const bool active = at.active;
  if (active) {
    for (int d = lane; d < x.hs; d += kWarp) q_rows[warp][d] = x.row(b, i, 0, h)[d];
  }
  float o[kPerLane] = {};
  float m = -INFINITY, l = 0.0f;  // running maximum and sum of exp(score - m)
  for_each_key_tile(x, b, h, first, k_tile, v_tile, [&](int j0) {
    if (!active || j0 > i) return;  // the same for the whole warp
    const int j = j0 + lane;
    const bool seen = j <= i;
    const float s = seen ? dot(q_rows[warp], k_tile[lane], x.hs) * scale : -INFINITY;
    const float m_new = fmaxf(m, warp_max(s));  // finite: key j0 <= i is in this tile
    const float p = seen ? expf(s - m_new) : 0.0f;
    const float alpha = expf(m - m_new);  // 0 on the first tile
    l = l * alpha + warp_sum(p);
    for (float& v : o) v *= alpha;
    add_weighted_rows(o, p, v_tile, x.hs);
    m = m_new;
  });
  if (!active) return;
  const float inv = 1.0f / l;
  float* dst = out + (int64_t{b} * x.T + i) * x.C + int64_t{h} * x.hs;
  for (int r = 0; r < kPerLane; ++r) {
    const int d = lane + r * kWarp;
    if (d < x.hs) dst[d] = o[r] * inv;
  }
  if (lane == 0) lse[(int64_t{b} * NH + h) * x.T + i] = m + logf(l);
}

// row_dot[b,h,t] = dout_t · out_t over head h: a warp per row, in fp32 from fp32 or bf16 rows.
template <typename S>
__global__ void row_dot_kernel(float* row_dot, const S* dout, const S* out, int B, int T, int C,
                               int NH) {
  const int64_t row = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) / kWarp;
  if (row >= int64_t{B} * NH * T) return;  // whole warps leave together
  const int lane = threadIdx.x % kWarp;
  const int hs = C / NH;
  const int t = static_cast<int>(row % T);
  const int h = static_cast<int>(row / T % NH);
  const int64_t b = row / (int64_t{T} * NH);
  const int64_t at = (b * T + t) * C + int64_t{h} * hs;
  float sum = 0.0f;
  for (int d = lane; d < hs; d += kWarp)
    sum += detail::load(dout, at + d) * detail::load(out, at + d);
  sum = warp_sum(sum);
  if (lane == 0) row_dot[row] = sum;
}

// The same in 16-byte chunks (Chunk<S>) where each head's slice of a row is a power-of-two number
// `group` <= 32 of them and dout and out start 16-byte aligned: a thread per chunk
// in memory order, so a warp reads 512 contiguous bytes of each, and the `group` threads of a
// slice add their chunks' products by shuffles. `chunks` is B·T·C / kCount. row_dot_group gives
// `group`, or 0 where this kernel does not apply.
template <typename S>
inline int row_dot_group(const S* dout, const S* out, int C, int NH) {
  constexpr int kCount = detail::Chunk<S>::kCount;
  const int hs = C / NH;
  const int group = hs / kCount;
  const bool aligned = reinterpret_cast<uintptr_t>(dout) % sizeof(detail::Chunk<S>) == 0 &&
                       reinterpret_cast<uintptr_t>(out) % sizeof(detail::Chunk<S>) == 0;
  const bool power_of_two = group > 0 && group <= kWarp && (group & (group - 1)) == 0;
  return aligned && hs % kCount == 0 && power_of_two ? group : 0;
}
template <typename S>
__global__ void row_dot_chunks_kernel(float* row_dot, const S* dout, const S* out, int64_t chunks,
                                      int T, int C, int NH, int group) {
  constexpr int kCount = detail::Chunk<S>::kCount;
  const int64_t i = detail::element();
  float sum = 0.0f;
  if (i < chunks) {  // no early return: the whole warp shuffles
    const detail::Chunk<S> d = reinterpret_cast<const detail::Chunk<S>*>(dout)[i];
    const detail::Chunk<S> o = reinterpret_cast<const detail::Chunk<S>*>(out)[i];
#pragma unroll
    for (int k = 0; k < kCount; ++k) sum += detail::load(d.x, k) * detail::load(o.x, k);
  }
  sum = detail::group_sum(sum, group);
  if (i >= chunks || i % group != 0) return;
  const int row_chunks = C / kCount;
  const int64_t token = i / row_chunks;
  const int h = static_cast<int>(i % row_chunks) / group;
  row_dot[(token / T * NH + h) * T + token % T] = sum;
}

// dQ per query row: dq_i = scale Σ_{j<=i} ds_ij k_j, with p_ij = exp(scale q_i·k_j - lse_i),
// ds_ij = p_ij (dout_i·v_j - row_dot_i). Grid and rows as the forward's.
__global__ void __launch_bounds__(kThreads)
    flash_dq_kernel(float* dqkv, const float* dout, const float* lse, const float* row_dot, Heads x,
                    int NH, float scale) {
  __shared__ float k_tile[kTile][kStride];
  __shared__ float v_tile[kTile][kStride];
  __shared__ float q_rows[kRows][kFlashMaxHeadSize];
  __shared__ float dout_rows[kRows][kFlashMaxHeadSize];
  const Place at(x.T);
  const int b = at.b, h = at.h, warp = at.warp, lane = at.lane, first = at.first, i = at.row;
  const bool active = at.active;
  float row_lse = 0.0f, row_d = 0.0f;
  if (active) {
    const float* d_out = dout + (int64_t{b} * x.T + i) * x.C + int64_t{h} * x.hs;
    for (int d = lane; d < x.hs; d += kWarp) {
      q_rows[warp][d] = x.row(b, i, 0, h)[d];
      dout_rows[warp][d] = d_out[d];
    }
    const int64_t stat = (int64_t{b} * NH + h) * x.T + i;
    row_lse = lse[stat];
    row_d = row_dot[stat];
  }
  float dq[kPerLane] = {};
  for_each_key_tile(x, b, h, first, k_tile, v_tile, [&](int j0) {
    if (!active || j0 > i) return;
    const int j = j0 + lane;
    float ds = 0.0f;
    if (j <= i) {
      const float p = expf(dot(q_rows[warp], k_tile[lane], x.hs) * scale - row_lse);
      ds = p * (dot(dout_rows[warp], v_tile[lane], x.hs) - row_d);
    }
    add_weighted_rows(dq, ds, k_tile, x.hs);
  });
  if (!active) return;
  float* dst = dqkv + (int64_t{b} * x.T + i) * 3 * x.C + int64_t{h} * x.hs;
  for (int r = 0; r < kPerLane; ++r) {
    const int d = lane + r * kWarp;
    if (d < x.hs) dst[d] += dq[r] * scale;
  }
}

// dK and dV per key row j: dv_j = Σ_{i>=j} p_ij dout_i, dk_j = scale Σ_{i>=j} ds_ij q_i. Grid
// (key blocks, NH, B); warp w of block x takes key row x·kRows + w and walks the query tiles
// from the one holding the block's first key.
__global__ void __launch_bounds__(kThreads)
    flash_dkv_kernel(float* dqkv, const float* dout, const float* lse, const float* row_dot,
                     Heads x, int NH, float scale) {
  __shared__ float q_tile[kTile][kStride];
  __shared__ float dout_tile[kTile][kStride];
  __shared__ float lse_tile[kTile];
  __shared__ float dot_tile[kTile];
  __shared__ float k_rows[kRows][kFlashMaxHeadSize];
  __shared__ float v_rows[kRows][kFlashMaxHeadSize];
  const Place at(x.T);
  const int b = at.b, h = at.h, warp = at.warp, lane = at.lane, first = at.first, j = at.row;
  const bool active = at.active;
  if (active) {
    for (int d = lane; d < x.hs; d += kWarp) {
      k_rows[warp][d] = x.row(b, j, 1, h)[d];
      v_rows[warp][d] = x.row(b, j, 2, h)[d];
    }
  }
  float dk[kPerLane] = {}, dv[kPerLane] = {};
  const int64_t stats = (int64_t{b} * NH + h) * x.T;  // this head's lse and row_dot
  for (int i0 = first / kTile * kTile; i0 < x.T; i0 += kTile) {
    __syncthreads();
    load_tile(q_tile, x, b, h, 0, i0);
    for (int e = threadIdx.x; e < kTile * x.hs; e += blockDim.x) {
      const int r = e / x.hs, d = e % x.hs;
      const int t = i0 + r;
      dout_tile[r][d] = t < x.T ? dout[(int64_t{b} * x.T + t) * x.C + int64_t{h} * x.hs + d] : 0.0f;
    }
    if (threadIdx.x < kTile) {
      const int t = i0 + threadIdx.x;
      lse_tile[threadIdx.x] = t < x.T ? lse[stats + t] : 0.0f;
      dot_tile[threadIdx.x] = t < x.T ? row_dot[stats + t] : 0.0f;
    }
    __syncthreads();
    if (!active || i0 + kTile <= j) continue;  // every query of the tile comes before j
    const int i = i0 + lane;
    float p = 0.0f, ds = 0.0f;
    if (i >= j && i < x.T) {
      p = expf(dot(q_tile[lane], k_rows[warp], x.hs) * scale - lse_tile[lane]);
      ds = p * (dot(dout_tile[lane], v_rows[warp], x.hs) - dot_tile[lane]);
    }
    add_weighted_rows(dv, p, dout_tile, x.hs);
    add_weighted_rows(dk, ds, q_tile, x.hs);
  }
  if (!active) return;
  float* dk_dst = dqkv + (int64_t{b} * x.T + j) * 3 * x.C + x.C + int64_t{h} * x.hs;
  float* dv_dst = dk_dst + x.C;
  for (int r = 0; r < kPerLane; ++r) {
    const int d = lane + r * kWarp;
    if (d < x.hs) {
      dk_dst[d] += dk[r] * scale;
      dv_dst[d] += dv[r];
    }
  }
}

}  // namespace ds::tensor::cuda::flash
