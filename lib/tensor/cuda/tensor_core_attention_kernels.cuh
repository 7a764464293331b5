// The kernels of tensor_core_attention.h, apart from their launches so that the tests can also
// build them against a CPU emulation of CUDA (test/emulated_cuda/), which checks their indexing,
// masking and synchronisation on machines without a GPU. A block has kWarps warps and owns
// kRows = 64 rows of one (batch row, head); warp w owns rows 16w .. 16w+15 of them. Per tile of
// the other side, a warp multiplies its rows with the tile on the tensor cores into fp32 scores
// in its own shared memory, turns them into bf16 probabilities (or their gradients) with its
// lanes, and multiplies those with the tile again into fp32 accumulators. WMMA fragments are
// opaque, so everything a lane must see row by row (the online softmax's rescaling, the final
// division) goes through shared memory; the backward's accumulators, which need no rescaling,
// stay in registers.
//
// The head size is a template parameter (F fragments of 16), so the fragment loops unroll and
// the accumulators stay in registers. Each kernel takes its shared memory dynamically:
// shared_bytes<ForwardShared<F>>(), <DqShared<F>>() or <DkvShared<F>>().
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstddef>
#include <cstdint>

#include "tensor/cuda/device_primitives.cuh"

namespace ds::tensor::cuda::tc_attention {

using detail::dynamic_shared_memory;
using detail::kWarp;
using detail::warp_max;
using detail::warp_sum;
namespace wmma = nvcuda::wmma;

using bf16 = __nv_bfloat16;

constexpr int kFrag = 16;                 // WMMA's m = n = k
constexpr int kWarps = 4;                 // warps per block
constexpr int kRows = kWarps * kFrag;     // rows a block owns: 64
constexpr int kTile = kRows;              // rows of the other side per tile; the causal loop
                                          // bounds below rely on the two being equal
constexpr int kThreads = kWarps * kWarp;  // 128
constexpr int kMaxFrags = 8;              // head size 128
constexpr int kPerLane = kTile / kWarp;   // a row's tile columns per lane

// Row strides in shared memory. WMMA wants them to be multiples of 8 bf16 or 4 floats, and
// every fragment 32-byte aligned; the padding beyond that staggers rows across banks: 16 bytes
// for bf16 rows, 32 for fp32 ones, whose accumulator stores write 8-byte pairs, so that the
// four rows one store instruction touches land in four different groups of 8 banks.
constexpr int kScoreStride = kTile + 8;  // fp32 scores [kFrag][kTile]
constexpr int kProbStride = kTile + 8;   // bf16 probabilities [kFrag][kTile]
template <int F>
constexpr int kHeadStride = F* kFrag + 8;  // bf16 rows of a head
template <int F>
constexpr int kOutStride = F* kFrag + 8;  // fp32 rows of a head

// Per warp, the fp32 scores and their gradients side by side; after the tiles, the same floats
// stage the warp's accumulated rows on their way out.
constexpr int kWorkFloats = 2 * kFrag * kScoreStride;
static_assert(kFrag * kOutStride<kMaxFrags> <= kWorkFloats, "the staging fits the work floats");

using FragA = wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, bf16, wmma::row_major>;
using FragB = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, bf16, wmma::row_major>;
using FragBt = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, bf16, wmma::col_major>;
using FragAcc = wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float>;

// Lays a block's shared-memory regions out one after another: on the host (base nullptr) to
// size the launch, on the device over the dynamic shared memory to find them, from the same
// code. Every region but the trailing statistics is a multiple of 128 bytes long, which keeps
// each fragment aligned.
struct Carver {
  unsigned char* base;
  size_t used = 0;
  template <typename T>
  __host__ __device__ T* take(size_t count) {
    T* region = base == nullptr ? nullptr : reinterpret_cast<T*>(base + used);
    used += sizeof(T) * count;
    return region;
  }
  // Region `warp` of kWarps regions of `count` each.
  template <typename T>
  __host__ __device__ T* take_per_warp(size_t count, int warp) {
    return take<T>(kWarps * count) + (base == nullptr ? 0 : warp * count);
  }
};

template <int F>
__host__ __device__ bf16* take_head_rows(Carver& c) {
  return c.take<bf16>(size_t{kRows} * kHeadStride<F>);
}

// The forward's shared memory: the block's queries, the tile's keys and values, and per warp
// its scores, probabilities, output rows so far, and each row's running max and sum of
// exponentials with the factor the latest tile rescaled them by.
template <int F>
struct ForwardShared {
  bf16 *q, *k, *v;
  float* scores;
  bf16* probs;
  float* out;
  float *max, *sum, *rescale;
  __host__ __device__ ForwardShared(Carver& c, int warp)
      : q(take_head_rows<F>(c)),
        k(take_head_rows<F>(c)),
        v(take_head_rows<F>(c)),
        scores(c.take_per_warp<float>(kFrag * kScoreStride, warp)),
        probs(c.take_per_warp<bf16>(kFrag * kProbStride, warp)),
        out(c.take_per_warp<float>(kFrag * kOutStride<F>, warp)),
        max(c.take_per_warp<float>(kFrag, warp)),
        sum(c.take_per_warp<float>(kFrag, warp)),
        rescale(c.take_per_warp<float>(kFrag, warp)) {}
};

// The backward's: the queries' and dout's rows, the keys' and values' (one side the block's,
// the other the tile's), per warp the scores with their gradients and the bf16 score gradients
// (and, for dK/dV, the bf16 probabilities; dQ needs none), and the queries' log-sum-exp and
// row_dot (the block's or the tile's).
template <int F, bool kWithProbs>
struct BackwardShared {
  bf16 *q, *dout, *k, *v;
  float* work;  // scores | dprobs
  bf16 *probs, *dscores;
  float *lse, *row_dot;
  __host__ __device__ BackwardShared(Carver& c, int warp)
      : q(take_head_rows<F>(c)),
        dout(take_head_rows<F>(c)),
        k(take_head_rows<F>(c)),
        v(take_head_rows<F>(c)),
        work(c.take_per_warp<float>(kWorkFloats, warp)),
        probs(kWithProbs ? c.take_per_warp<bf16>(kFrag * kProbStride, warp) : nullptr),
        dscores(c.take_per_warp<bf16>(kFrag * kProbStride, warp)),
        lse(c.take<float>(kRows)),
        row_dot(c.take<float>(kRows)) {}
  __device__ float* scores() const { return work; }
  __device__ float* dprobs() const { return work + kFrag * kScoreStride; }
};
template <int F>
using DqShared = BackwardShared<F, false>;
template <int F>
using DkvShared = BackwardShared<F, true>;

template <typename Shared>
inline size_t shared_bytes() {
  Carver c{nullptr};
  const Shared layout(c, 0);
  (void)layout;
  return c.used;
}

// Rows first .. first+kRows-1 of the fp32 matrix at `src` (row t at src + t·row_stride, a
// head's F·16 columns) into dst as bf16, zeros past T. The whole block calls it.
template <int F>
__device__ void load_rows(bf16* dst, const float* src, int64_t row_stride, int T, int first) {
  constexpr int hs = F * kFrag;
  for (int e = threadIdx.x; e < kRows * hs; e += kThreads) {
    const int r = e / hs, d = e % hs;
    const int t = first + r;
    dst[r * kHeadStride<F> + d] = __float2bfloat16(t < T ? src[t * row_stride + d] : 0.0f);
  }
}

// The log-sum-exp and row_dot of rows first .. first+kRows-1 (zeros past T).
__device__ inline void load_row_stats(float* lse_dst, float* row_dot_dst, const float* lse,
                                      const float* row_dot, int T, int first) {
  for (int r = threadIdx.x; r < kRows; r += kThreads) {
    const int t = first + r;
    lse_dst[r] = t < T ? lse[t] : 0.0f;
    row_dot_dst[r] = t < T ? row_dot[t] : 0.0f;
  }
}

// out[kFrag][kTile] (fp32, stride kScoreStride) = rows · tileᵀ: the warp's kFrag rows of a
// head against the tile's kTile rows, both bf16 in shared memory.
template <int F>
__device__ void times_tile_transposed(float* out, const bf16* rows, const bf16* tile) {
  FragA a[F];
#pragma unroll
  for (int k = 0; k < F; ++k) wmma::load_matrix_sync(a[k], rows + k * kFrag, kHeadStride<F>);
#pragma unroll
  for (int n = 0; n < kTile / kFrag; ++n) {
    FragAcc acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int k = 0; k < F; ++k) {
      // Column-major B over the tile's rows: B(k, n) = tile[n][k], the transpose.
      FragBt b;
      wmma::load_matrix_sync(b, tile + n * kFrag * kHeadStride<F> + k * kFrag, kHeadStride<F>);
      wmma::mma_sync(acc, a[k], b, acc);
    }
    wmma::store_matrix_sync(out + n * kFrag, acc, kScoreStride, wmma::mem_row_major);
  }
}

// acc (kFrag rows of a head) += weights · tile: bf16 weights [kFrag][kTile] (stride
// kProbStride) against the tile's kTile rows.
template <int F>
__device__ void accumulate_times_tile(FragAcc (&acc)[F], const bf16* weights, const bf16* tile) {
#pragma unroll
  for (int k = 0; k < kTile / kFrag; ++k) {
    FragA a;
    wmma::load_matrix_sync(a, weights + k * kFrag, kProbStride);
#pragma unroll
    for (int n = 0; n < F; ++n) {
      FragB b;
      wmma::load_matrix_sync(b, tile + k * kFrag * kHeadStride<F> + n * kFrag, kHeadStride<F>);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
}

// The online softmax over one tile for the warp's rows (queries first_row + r) and the tile's
// keys (j0 + c), causal and scaled: updates each row's running max and sum, writes the tile's
// exp(score − max) to probs as bf16, and the factor the row's earlier terms shrink by to
// rescale. Every row sees key j0 (j0 <= first_row), so each max is finite.
__device__ inline void online_softmax_tile(bf16* probs, float* max, float* sum, float* rescale,
                                           const float* scores, int first_row, int j0,
                                           float scale) {
  const int lane = threadIdx.x % kWarp;
  for (int r = 0; r < kFrag; ++r) {
    const int i = first_row + r;
    float x[kPerLane];
    float tile_max = -INFINITY;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      const int c = lane + e * kWarp;
      x[e] = j0 + c <= i ? scores[r * kScoreStride + c] * scale : -INFINITY;
      tile_max = fmaxf(tile_max, x[e]);
    }
    const float old_max = max[r];
    const float new_max = fmaxf(old_max, warp_max(tile_max));
    float tile_sum = 0.0f;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      const float p = expf(x[e] - new_max);  // 0 where masked
      probs[r * kProbStride + lane + e * kWarp] = __float2bfloat16(p);
      tile_sum += p;
    }
    tile_sum = warp_sum(tile_sum);
    __syncwarp();  // every lane has read max[r]
    if (lane == 0) {
      const float factor = expf(old_max - new_max);  // 0 on the first tile
      rescale[r] = factor;
      sum[r] = sum[r] * factor + tile_sum;
      max[r] = new_max;
    }
  }
}

// The probabilities and score gradients of the warp's kFrag rows against a tile's kTile
// columns, from the recomputed scores and dprobs = dout·vᵀ: p = exp(scale·score − lse) where
// the query sees the key (0 elsewhere, and for queries past T), ds = p (dprob − row_dot), with
// lse and row_dot the query's. Rows are queries (kRowsAreQueries, the dQ kernel: `lse` and
// `row_dot` indexed by row) or keys (the dK/dV kernel: indexed by column). probs may be
// nullptr (dQ needs only the gradients).
template <bool kRowsAreQueries>
__device__ void probability_gradients(bf16* probs, bf16* dscores, const float* scores,
                                      const float* dprobs, const float* lse, const float* row_dot,
                                      int first_row, int first_col, int T, float scale) {
  const int lane = threadIdx.x % kWarp;
  for (int r = 0; r < kFrag; ++r) {
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      const int c = lane + e * kWarp;
      const int query = kRowsAreQueries ? first_row + r : first_col + c;
      const int key = kRowsAreQueries ? first_col + c : first_row + r;
      const int stat = kRowsAreQueries ? r : c;
      float p = 0.0f, ds = 0.0f;
      if (key <= query && query < T) {
        p = expf(scores[r * kScoreStride + c] * scale - lse[stat]);
        ds = p * (dprobs[r * kScoreStride + c] - row_dot[stat]);
      }
      if (probs != nullptr) probs[r * kProbStride + c] = __float2bfloat16(p);
      dscores[r * kProbStride + c] = __float2bfloat16(ds);
    }
  }
}

// dst row t (at dst + t·row_stride) += scale · the warp's staged rows first_row + r, for t < T.
template <int F>
__device__ void add_rows(float* dst, int64_t row_stride, const float* staged, int first_row, int T,
                         float scale) {
  constexpr int hs = F * kFrag;
  for (int e = threadIdx.x % kWarp; e < kFrag * hs; e += kWarp) {
    const int r = e / hs, d = e % hs;
    if (first_row + r < T)
      dst[(first_row + r) * row_stride + d] += scale * staged[r * kOutStride<F> + d];
  }
}

// Stages the warp's accumulators in `staged` (kFrag rows, stride kOutStride) for add_rows.
template <int F>
__device__ void stage(float* staged, const FragAcc (&acc)[F]) {
  __syncwarp();  // the lanes are done with what `staged` held
#pragma unroll
  for (int n = 0; n < F; ++n) {
    wmma::store_matrix_sync(staged + n * kFrag, acc[n], kOutStride<F>, wmma::mem_row_major);
  }
  __syncwarp();
}

// Where a block works: batch row b and head h (grid z and y), the warp, and the head's columns
// of batch row b in qkv (q; k at +C, v at +2C) and in the [B,T,C] activations.
struct Place {
  int b, h, warp;
  int64_t qkv_offset, row_offset, stat_offset;
  __device__ Place(int T, int C, int NH, int hs)
      : b(blockIdx.z),
        h(blockIdx.y),
        warp(threadIdx.x / kWarp),
        qkv_offset(int64_t{b} * T * 3 * C + int64_t{h} * hs),
        row_offset(int64_t{b} * T * C + int64_t{h} * hs),
        stat_offset((int64_t{b} * NH + h) * T) {}
};

// Grid (query blocks, NH, B), the block with the most key tiles first.
template <int F>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(float* out, float* lse, const float* qkv, int T, int C, int NH, float scale) {
  constexpr int hs = F * kFrag;
  const Place at(T, C, NH, hs);
  Carver carver{dynamic_shared_memory()};
  const ForwardShared<F> s(carver, at.warp);
  const int lane = threadIdx.x % kWarp;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;
  const int first_row = q0 + at.warp * kFrag;
  const float* heads = qkv + at.qkv_offset;

  load_rows<F>(s.q, heads, 3 * C, T, q0);
  for (int e = lane; e < kFrag * hs; e += kWarp) s.out[e / hs * kOutStride<F> + e % hs] = 0.0f;
  if (lane < kFrag) {
    s.max[lane] = -INFINITY;
    s.sum[lane] = 0.0f;
  }
  const bf16* my_q = s.q + at.warp * kFrag * kHeadStride<F>;
  for (int j0 = 0; j0 <= q0; j0 += kTile) {
    __syncthreads();  // every warp is done with the previous tile (and q is loaded)
    load_rows<F>(s.k, heads + C, 3 * C, T, j0);
    load_rows<F>(s.v, heads + 2 * C, 3 * C, T, j0);
    __syncthreads();
    times_tile_transposed<F>(s.scores, my_q, s.k);
    __syncwarp();
    online_softmax_tile(s.probs, s.max, s.sum, s.rescale, s.scores, first_row, j0, scale);
    __syncwarp();
    for (int e = lane; e < kFrag * hs; e += kWarp) {
      s.out[e / hs * kOutStride<F> + e % hs] *= s.rescale[e / hs];
    }
    __syncwarp();
    FragAcc acc[F];
#pragma unroll
    for (int n = 0; n < F; ++n) {
      wmma::load_matrix_sync(acc[n], s.out + n * kFrag, kOutStride<F>, wmma::mem_row_major);
    }
    accumulate_times_tile<F>(acc, s.probs, s.v);
#pragma unroll
    for (int n = 0; n < F; ++n) {
      wmma::store_matrix_sync(s.out + n * kFrag, acc[n], kOutStride<F>, wmma::mem_row_major);
    }
    __syncwarp();
  }
  float* dst = out + at.row_offset;
  for (int e = lane; e < kFrag * hs; e += kWarp) {
    const int r = e / hs, d = e % hs;
    if (first_row + r < T) {
      dst[int64_t{first_row + r} * C + d] = s.out[r * kOutStride<F> + d] / s.sum[r];
    }
  }
  if (lane < kFrag && first_row + lane < T) {
    lse[at.stat_offset + first_row + lane] = s.max[lane] + logf(s.sum[lane]);
  }
}

// dQ for the block's queries: dq_i = scale Σ_{j<=i} ds_ij k_j over the key tiles up to the
// block's diagonal. Grid as the forward's.
template <int F>
__global__ void __launch_bounds__(kThreads)
    dq_kernel(float* dqkv, const float* dout, const float* lse, const float* row_dot,
              const float* qkv, int T, int C, int NH, float scale) {
  constexpr int hs = F * kFrag;
  const Place at(T, C, NH, hs);
  Carver carver{dynamic_shared_memory()};
  const DqShared<F> s(carver, at.warp);
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;
  const int first_row = q0 + at.warp * kFrag;
  const float* heads = qkv + at.qkv_offset;

  load_rows<F>(s.q, heads, 3 * C, T, q0);
  load_rows<F>(s.dout, dout + at.row_offset, C, T, q0);
  load_row_stats(s.lse, s.row_dot, lse + at.stat_offset, row_dot + at.stat_offset, T, q0);
  const bf16* my_q = s.q + at.warp * kFrag * kHeadStride<F>;
  const bf16* my_dout = s.dout + at.warp * kFrag * kHeadStride<F>;
  FragAcc dq[F];
#pragma unroll
  for (int n = 0; n < F; ++n) wmma::fill_fragment(dq[n], 0.0f);
  for (int j0 = 0; j0 <= q0; j0 += kTile) {
    __syncthreads();
    load_rows<F>(s.k, heads + C, 3 * C, T, j0);
    load_rows<F>(s.v, heads + 2 * C, 3 * C, T, j0);
    __syncthreads();
    times_tile_transposed<F>(s.scores(), my_q, s.k);
    times_tile_transposed<F>(s.dprobs(), my_dout, s.v);
    __syncwarp();
    probability_gradients<true>(s.probs, s.dscores, s.scores(), s.dprobs(), s.lse + at.warp * kFrag,
                                s.row_dot + at.warp * kFrag, first_row, j0, T, scale);
    __syncwarp();
    accumulate_times_tile<F>(dq, s.dscores, s.k);
  }
  stage<F>(s.work, dq);
  add_rows<F>(dqkv + at.qkv_offset, 3 * C, s.work, first_row, T, scale);
}

// dK and dV for the block's keys: dv_j = Σ_{i>=j} p_ij dout_i, dk_j = scale Σ_{i>=j} ds_ij q_i
// over the query tiles from the block's diagonal on. Grid (key blocks, NH, B), the block with
// the most query tiles (the first keys) first.
template <int F>
__global__ void __launch_bounds__(kThreads)
    dkv_kernel(float* dqkv, const float* dout, const float* lse, const float* row_dot,
               const float* qkv, int T, int C, int NH, float scale) {
  constexpr int hs = F * kFrag;
  const Place at(T, C, NH, hs);
  Carver carver{dynamic_shared_memory()};
  const DkvShared<F> s(carver, at.warp);
  const int k0 = blockIdx.x * kRows;
  const int first_row = k0 + at.warp * kFrag;
  const float* heads = qkv + at.qkv_offset;

  load_rows<F>(s.k, heads + C, 3 * C, T, k0);
  load_rows<F>(s.v, heads + 2 * C, 3 * C, T, k0);
  const bf16* my_k = s.k + at.warp * kFrag * kHeadStride<F>;
  const bf16* my_v = s.v + at.warp * kFrag * kHeadStride<F>;
  FragAcc dk[F], dv[F];
#pragma unroll
  for (int n = 0; n < F; ++n) {
    wmma::fill_fragment(dk[n], 0.0f);
    wmma::fill_fragment(dv[n], 0.0f);
  }
  for (int i0 = k0; i0 < T; i0 += kTile) {
    __syncthreads();
    load_rows<F>(s.q, heads, 3 * C, T, i0);
    load_rows<F>(s.dout, dout + at.row_offset, C, T, i0);
    load_row_stats(s.lse, s.row_dot, lse + at.stat_offset, row_dot + at.stat_offset, T, i0);
    __syncthreads();
    times_tile_transposed<F>(s.scores(), my_k, s.q);     // scoresᵀ
    times_tile_transposed<F>(s.dprobs(), my_v, s.dout);  // dprobsᵀ = v·doutᵀ
    __syncwarp();
    probability_gradients<false>(s.probs, s.dscores, s.scores(), s.dprobs(), s.lse, s.row_dot,
                                 first_row, i0, T, scale);
    __syncwarp();
    accumulate_times_tile<F>(dv, s.probs, s.dout);
    accumulate_times_tile<F>(dk, s.dscores, s.q);
  }
  float* dst = dqkv + at.qkv_offset;
  stage<F>(s.work, dk);
  add_rows<F>(dst + C, 3 * C, s.work, first_row, T, scale);
  stage<F>(s.work, dv);
  add_rows<F>(dst + 2 * C, 3 * C, s.work, first_row, T, 1.0f);
}

}  // namespace ds::tensor::cuda::tc_attention
