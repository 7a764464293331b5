// The kernels of tensor_core_attention.h, apart from their launches so that the tests can also
// build them against a CPU emulation of CUDA (test/emulated_cuda/), which checks their indexing,
// masking and synchronisation on machines without a GPU.
//
// The kernels read bf16 copies of their operands made per head first (head_major_kernel): each
// tensor's rows of one (batch row, head), [Tp][hs], T padded with zero rows to Tp, a multiple of
// the tile. So every tile is a run of whole 16-byte chunks, which the block copies into shared
// memory with cp.async (async_copy.cuh) while it multiplies the previous tile: two buffers per
// tile operand. A product that reads a tile along its other axis transposes it on the way into
// registers (ldmatrix .trans, warp_mma.cuh).
//
// A block has kWarps warps and owns kRows = 64 rows of one (batch row, head): queries in the
// forward and dQ kernels, keys in the dK/dV kernel; warp w owns rows 16w .. 16w+15 of them. The
// block walks the other side in tiles of kTile = 64 rows. Per tile, each warp multiplies its rows
// with the tile on the tensor cores (mma.sync, warp_mma.cuh) into fp32 scores held in registers,
// turns them into probabilities (or their gradients) in place, and multiplies those, rounded to
// bf16 in registers, with the tile again into fp32 accumulators. So the softmax, its statistics
// and every sum stay in fp32 and in registers; a row's values are spread over the four lanes of a
// quad, which reduce with two shuffles.
//
// The head size is a template parameter (F fragments of 16), so the loops over it unroll and the
// accumulators stay in registers. Each kernel takes its shared memory dynamically:
// shared_bytes<ForwardShared<F>>(), <DqShared<F>>() or <DkvShared<F>>().
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "tensor/cuda/async_copy.cuh"
#include "tensor/cuda/device_primitives.cuh"
#include "tensor/cuda/storage_types.cuh"
#include "tensor/cuda/warp_mma.cuh"

namespace ds::tensor::cuda::tc_attention {

using detail::a_from_results;
using detail::commit_copies;
using detail::copy_async_16;
using detail::dynamic_shared_memory;
using detail::FragmentLane;
using detail::kWarp;
using detail::load_a;
using detail::load_b_pair;
using detail::mma_bf16;
using detail::pack_bf16;
using detail::wait_copies;

using Bf16 = __nv_bfloat16;

constexpr int kFrag = 16;                 // rows of a warp's slice, and the products' k
constexpr int kWarps = 4;                 // warps per block
constexpr int kRows = kWarps * kFrag;     // rows a block owns: 64
constexpr int kTile = kRows;              // rows of the other side per tile; the causal loop
                                          // bounds below rely on the two being equal
constexpr int kThreads = kWarps * kWarp;  // 128
constexpr int kMaxFrags = 8;              // head size 128
constexpr int kTileColumns = kTile / 8;   // 8-column result fragments across a tile
constexpr float kLog2e = 1.4426950408889634f;

// The row stride in shared memory, in bf16 ([tile row][head column]). With the 8 of padding a
// row is an odd number of 16-byte units long, so the eight rows an ldmatrix phase reads fall in
// different banks, for every head size here.
template <int F>
constexpr int kHeadStride = F* kFrag + 8;  // [tile row][head column]

// The warp's result fragments across a tile (16 x kTile scores) and across a head (16 x F·16).
// The helpers below that take them by reference are forced inline, which keeps them in registers.
using TileResult = float[kTileColumns][4];
template <int F>
using HeadResult = float[2 * F][4];

// Lays a block's shared-memory regions out one after another: on the host (base nullptr) to
// size the launch, on the device over the dynamic shared memory to find them, from the same
// code. Every region is a multiple of 128 bytes long, which keeps each 16-byte store aligned.
struct Carver {
  unsigned char* base;
  size_t used = 0;
  template <typename T>
  __host__ __device__ T* take(size_t count) {
    T* region = base == nullptr ? nullptr : reinterpret_cast<T*>(base + used);
    used += sizeof(T) * count;
    return region;
  }
};

template <int F>
__host__ __device__ Bf16* take_rows(Carver& c) {
  return c.take<Bf16>(size_t{kRows} * kHeadStride<F>);
}

// The forward's shared memory: the block's queries, and per buffer the tile's keys and values.
template <int F>
struct ForwardShared {
  Bf16 *q, *k[2], *v[2];
  __host__ __device__ explicit ForwardShared(Carver& c) : q(take_rows<F>(c)) {
    for (int b = 0; b < 2; ++b) {
      k[b] = take_rows<F>(c);
      v[b] = take_rows<F>(c);
    }
  }
};

// dQ's: the block's queries and dout rows, per buffer the tile's keys and values.
template <int F>
struct DqShared {
  Bf16 *q, *dout, *k[2], *v[2];
  __host__ __device__ explicit DqShared(Carver& c) : q(take_rows<F>(c)), dout(take_rows<F>(c)) {
    for (int b = 0; b < 2; ++b) {
      k[b] = take_rows<F>(c);
      v[b] = take_rows<F>(c);
    }
  }
};

// dK/dV's: the block's keys and values, per buffer the tile's queries and dout rows and their
// log-sum-exp (log2-scaled) and row_dot.
template <int F>
struct DkvShared {
  Bf16 *k, *v, *q[2], *dout[2];
  float *lse[2], *row_dot[2];
  __host__ __device__ explicit DkvShared(Carver& c) : k(take_rows<F>(c)), v(take_rows<F>(c)) {
    for (int b = 0; b < 2; ++b) {
      q[b] = take_rows<F>(c);
      dout[b] = take_rows<F>(c);
      lse[b] = c.take<float>(kTile);
      row_dot[b] = c.take<float>(kTile);
    }
  }
};

// Buffer `b` (0 or 1) of a double-buffered region. A select rather than an index: indexing the
// array with a run-time value would put the whole layout in local memory.
template <typename T>
__device__ __forceinline__ T* pick(T* const (&buffers)[2], int b) {
  return b == 0 ? buffers[0] : buffers[1];
}

template <typename Shared>
inline size_t shared_bytes() {
  Carver c{nullptr};
  const Shared layout(c);
  (void)layout;
  return c.used;
}

// One tensor's bf16 copy for the kernels: per (batch row, head) its rows [Tp][hs].
struct HeadMajor {
  Bf16* rows;
};

// Four consecutive floats of a row, zeros for a row past T; one 16-byte load when the row allows.
using Four = detail::Chunk<float>;
__device__ __forceinline__ Four load_four(const float* p, bool in_range, bool vector) {
  if (!in_range) return Four{{0.0f, 0.0f, 0.0f, 0.0f}};
  if (vector) return *reinterpret_cast<const Four*>(p);
  return Four{{p[0], p[1], p[2], p[3]}};
}

// Rows t < T of one tensor (row t of batch row b at src + b·batch_stride + t·row_stride, head h
// at column h·hs, fp32) into `to` as bf16, zeros for t in [T, Tp). Grid (Tp / kRows, NH, B),
// kThreads threads: a block copies 64 rows of one head, four columns a thread.
__global__ void __launch_bounds__(kThreads)
    head_major_kernel(HeadMajor to, const float* src, int64_t batch_stride, int64_t row_stride,
                      int T, int Tp, int NH, int hs) {
  struct alignas(8) Pairs {
    uint32_t low, high;
  };
  const int b = blockIdx.z, h = blockIdx.y, t0 = blockIdx.x * kRows;
  const int64_t head = int64_t{b} * NH + h;
  const float* from = src + b * batch_stride + int64_t{h} * hs;
  const bool vector = detail::chunked(from) && row_stride % Four::kCount == 0;
  const int quads = hs / Four::kCount;
  for (int e = threadIdx.x; e < kRows * quads; e += kThreads) {
    const int r = e / quads, d = e % quads * Four::kCount, t = t0 + r;
    const Four x = load_four(from + int64_t{t} * row_stride + d, t < T, vector);
    *reinterpret_cast<Pairs*>(to.rows + (head * Tp + t) * hs + d) =
        Pairs{pack_bf16(x.x[0], x.x[1]), pack_bf16(x.x[2], x.x[3])};
  }
}

// Queues the copy of kRows rows of a head (bf16 at src, hs apart) into dst [kRows][kHeadStride].
template <int F>
__device__ __forceinline__ void stage_rows(Bf16* dst, const Bf16* src) {
  constexpr int kChunks = F * kFrag / 8;  // 16-byte chunks per row
  for (int e = threadIdx.x; e < kRows * kChunks; e += kThreads) {
    const int r = e / kChunks, c = e % kChunks;
    copy_async_16(dst + r * kHeadStride<F> + c * 8, src + r * F * kFrag + c * 8);
  }
}

// result = rows · tileᵀ: the warp's 16 rows of a head (bf16 at `rows`, stride kHeadStride)
// against the tile's kTile rows (at `tile`, the same stride), 16 x kTile in fp32.
template <int F>
__device__ __forceinline__ void times_tile_transposed(TileResult& result, const Bf16* rows,
                                                      const Bf16* tile, FragmentLane lane) {
#pragma unroll
  for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) result[n][e] = 0.0f;
  }
#pragma unroll
  for (int k = 0; k < F; ++k) {
    uint32_t a[4];
    load_a(a, rows + k * kFrag, kHeadStride<F>, lane);
#pragma unroll
    for (int n = 0; n < kTileColumns; n += 2) {
      // B(k, n) = tile[n][k]: the tile's rows are B's columns.
      uint32_t b[2], b_next[2];
      load_b_pair<true>(b, b_next, tile + n * 8 * kHeadStride<F> + k * kFrag, kHeadStride<F>, lane);
      mma_bf16(result[n], a, b);
      mma_bf16(result[n + 1], a, b_next);
    }
  }
}

// acc (16 rows of a head) += weights · tile: the warp's 16 x kTile weights (result fragments,
// rounded to bf16 here) against the tile's kTile rows (bf16 at `tile`, stride kHeadStride), read
// transposed into B's fragments.
template <int F>
__device__ __forceinline__ void accumulate_times_tile(HeadResult<F>& acc, const TileResult& weights,
                                                      const Bf16* tile, FragmentLane lane) {
#pragma unroll
  for (int k = 0; k < kTile / kFrag; ++k) {
    uint32_t a[4];
    a_from_results(a, weights[2 * k], weights[2 * k + 1]);
#pragma unroll
    for (int n = 0; n < 2 * F; n += 2) {
      uint32_t b[2], b_next[2];  // B(k, n) = tile[k][n]
      load_b_pair<false>(b, b_next, tile + k * kFrag * kHeadStride<F> + n * 8, kHeadStride<F>,
                         lane);
      mma_bf16(acc[n], a, b);
      mma_bf16(acc[n + 1], a, b_next);
    }
  }
}

template <int F>
__device__ __forceinline__ void zero(HeadResult<F>& acc) {
#pragma unroll
  for (int n = 0; n < 2 * F; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[n][e] = 0.0f;
  }
}

// The largest and the sum of a row's values over the four lanes of its quad.
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// On a diagonal tile, the scores of keys after their query become -inf, so that their
// exponentials are 0. The warp's result rows are `rows` (fragment rows g and g+8), its columns
// tile rows first_column + c; rows are queries (kRowsAreQueries: the forward and dQ) or keys
// (dK/dV, whose products are transposed). Only the diagonal tile has such keys. Rows and columns
// past T need no mask: their bf16 copies are zero rows (head_major_kernel), so they add nothing.
template <bool kRowsAreQueries>
__device__ __forceinline__ void mask_future_keys(TileResult& scores, const int (&rows)[2],
                                                 int first_column, FragmentLane lane) {
#pragma unroll
  for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int column = first_column + n * 8 + 2 * lane.t + e % 2;
      const int query = kRowsAreQueries ? rows[e / 2] : column;
      const int key = kRowsAreQueries ? column : rows[e / 2];
      if (key > query) scores[n][e] = -INFINITY;
    }
  }
}

// Row first_row + g + 8r (r = 0, 1) of dst (rows row_stride apart) += factor · the warp's head
// result for that row, for rows below T.
template <int F>
__device__ __forceinline__ void add_rows(float* dst, int64_t row_stride, const HeadResult<F>& acc,
                                         int first_row, int T, float factor, FragmentLane lane) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = first_row + lane.g + 8 * r;
    if (t >= T) continue;
    float* row = dst + int64_t{t} * row_stride + 2 * lane.t;
#pragma unroll
    for (int n = 0; n < 2 * F; ++n) {
      row[n * 8] += factor * acc[n][2 * r];
      row[n * 8 + 1] += factor * acc[n][2 * r + 1];
    }
  }
}

// Where a block works: batch row b and head h (grid z and y), the warp, the head's columns of
// batch row b in qkv (q; k at +C, v at +2C), in the [B,T,C] activations and in the [B,NH,T]
// statistics, and its head-major copies.
struct Place {
  int b, h, warp;
  int64_t qkv_offset, row_offset, stat_offset, head_rows;
  __device__ Place(int T, int Tp, int C, int NH, int hs)
      : b(blockIdx.z),
        h(blockIdx.y),
        warp(threadIdx.x / kWarp),
        qkv_offset(int64_t{b} * T * 3 * C + int64_t{h} * hs),
        row_offset(int64_t{b} * T * C + int64_t{h} * hs),
        stat_offset((int64_t{b} * NH + h) * T),
        head_rows((int64_t{b} * NH + h) * Tp * hs) {}
  __device__ const Bf16* rows(const HeadMajor& m, int first, int hs) const {
    return m.rows + head_rows + int64_t{first} * hs;
  }
};

// The rows a block owns (queries, or keys in dK/dV) from `first`, the warp's from warp_first,
// and the calling lane's two in the result fragments (rows g and g + 8 of the warp's 16).
struct BlockRows {
  int first, warp_first, mine[2];
  __device__ BlockRows(int first_row, int warp, FragmentLane lane)
      : first(first_row),
        warp_first(first_row + warp * kFrag),
        mine{warp_first + lane.g, warp_first + lane.g + 8} {}
};

// The walk over the other side's tiles t0 = first, first + kTile, ... below `end`, double-
// buffered: stage(t0, buffer) queues (and commits) a tile's copies, the first tile's before the
// walk; body(t0, buffer, more) runs once the tile is in, while the next one's copies run (`more`:
// there is a next tile, going into buffer 1 - buffer). Every warp is done with a buffer before it
// is refilled.
template <typename Stage, typename Body>
__device__ __forceinline__ void for_each_tile(int first, int end, Stage&& stage, Body&& body) {
  for (int t0 = first; t0 < end; t0 += kTile) {
    const int buffer = (t0 - first) / kTile % 2;
    const bool more = t0 + kTile < end;
    if (more) {
      stage(t0 + kTile, 1 - buffer);
      wait_copies<1>();
    } else {
      wait_copies<0>();
    }
    __syncthreads();  // the tile (and what the block loaded before the walk) is in
    body(t0, buffer, more);
    __syncthreads();  // every warp is done with the buffer the next stage overwrites
  }
}

// Queues the key and value tiles from row j0 into `buffer` of a forward's or dQ's shared memory.
template <int F, typename Shared>
__device__ __forceinline__ void stage_keys_values(const Shared& s, const Place& at, HeadMajor k,
                                                  HeadMajor v, int j0, int buffer) {
  stage_rows<F>(pick(s.k, buffer), at.rows(k, j0, F * kFrag));
  stage_rows<F>(pick(s.v, buffer), at.rows(v, j0, F * kFrag));
  commit_copies();
}

// Grid (query blocks, NH, B), the block with the most key tiles first. The scores are kept
// log2-scaled (scale·log2 e), so that each exponential is one exp2.
template <int F>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(float* out, float* lse, HeadMajor q, HeadMajor k, HeadMajor v, int T, int Tp,
                   int C, int NH, float scale) {
  constexpr int hs = F * kFrag;
  const Place at(T, Tp, C, NH, hs);
  Carver carver{dynamic_shared_memory()};
  const ForwardShared<F> s(carver);
  const FragmentLane lane;
  const BlockRows queries((gridDim.x - 1 - blockIdx.x) * kRows, at.warp, lane);
  const int q0 = queries.first;
  const int(&query)[2] = queries.mine;
  const float scale_log2 = scale * kLog2e;
  const auto stage = [&](int j0, int buffer) { stage_keys_values<F>(s, at, k, v, j0, buffer); };

  stage_rows<F>(s.q, at.rows(q, q0, hs));
  stage(0, 0);
  HeadResult<F> o;
  zero<F>(o);
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};  // sums: this lane's
  for_each_tile(0, q0 + 1, stage, [&](int j0, int buffer, bool) {
    TileResult p;
    times_tile_transposed<F>(p, s.q + at.warp * kFrag * kHeadStride<F>, pick(s.k, buffer), lane);
    // Every row sees key j0 <= q0, so each max is finite. The maximum of the raw scores, scaled,
    // is the maximum of the scaled ones (scale > 0).
    if (j0 == q0) mask_future_keys<true>(p, query, j0, lane);
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) tile_max[e / 2] = fmaxf(tile_max[e / 2], p[n][e]);
    }
    float rescale[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float new_max = fmaxf(row_max[r], quad_max(tile_max[r]) * scale_log2);
      rescale[r] = exp2f(row_max[r] - new_max);  // 0 on the first tile
      row_max[r] = new_max;
      row_sum[r] *= rescale[r];
    }
#pragma unroll
    for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[n][e] = exp2f(fmaf(p[n][e], scale_log2, -row_max[e / 2]));  // 0 where masked
        row_sum[e / 2] += p[n][e];
      }
    }
#pragma unroll
    for (int n = 0; n < 2 * F; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[n][e] *= rescale[e / 2];
    }
    accumulate_times_tile<F>(o, p, pick(s.v, buffer), lane);
  });
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] = quad_sum(row_sum[r]);
    if (query[r] >= T) continue;
    float* row = out + at.row_offset + int64_t{query[r]} * C + 2 * lane.t;
    const float inverse = 1.0f / row_sum[r];
#pragma unroll
    for (int n = 0; n < 2 * F; ++n) {
      row[n * 8] = o[n][2 * r] * inverse;
      row[n * 8 + 1] = o[n][2 * r + 1] * inverse;
    }
    if (lane.t == 0) lse[at.stat_offset + query[r]] = row_max[r] / kLog2e + logf(row_sum[r]);
  }
}

// dQ for the block's queries: dq_i = scale Σ_{j<=i} ds_ij k_j over the key tiles up to the
// block's diagonal, with p = exp(scale·score − lse) and ds = p (dout·v − row_dot). Grid as the
// forward's.
template <int F>
__global__ void __launch_bounds__(kThreads)
    dq_kernel(float* dqkv, HeadMajor dout, const float* lse, const float* row_dot, HeadMajor q,
              HeadMajor k, HeadMajor v, int T, int Tp, int C, int NH, float scale) {
  constexpr int hs = F * kFrag;
  const Place at(T, Tp, C, NH, hs);
  Carver carver{dynamic_shared_memory()};
  const DqShared<F> s(carver);
  const FragmentLane lane;
  const BlockRows queries((gridDim.x - 1 - blockIdx.x) * kRows, at.warp, lane);
  const int q0 = queries.first;
  const int(&query)[2] = queries.mine;
  const float scale_log2 = scale * kLog2e;
  const auto stage = [&](int j0, int buffer) { stage_keys_values<F>(s, at, k, v, j0, buffer); };
  float query_lse[2], query_dot[2];  // log2-scaled; zeros past T (whose rows add nothing)
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const bool valid = query[r] < T;
    query_lse[r] = valid ? lse[at.stat_offset + query[r]] * kLog2e : 0.0f;
    query_dot[r] = valid ? row_dot[at.stat_offset + query[r]] : 0.0f;
  }

  stage_rows<F>(s.q, at.rows(q, q0, hs));
  stage_rows<F>(s.dout, at.rows(dout, q0, hs));
  stage(0, 0);
  HeadResult<F> dq;
  zero<F>(dq);
  for_each_tile(0, q0 + 1, stage, [&](int j0, int buffer, bool) {
    TileResult ds, dprobs;
    times_tile_transposed<F>(ds, s.q + at.warp * kFrag * kHeadStride<F>, pick(s.k, buffer), lane);
    times_tile_transposed<F>(dprobs, s.dout + at.warp * kFrag * kHeadStride<F>, pick(s.v, buffer),
                             lane);
    if (j0 == q0) mask_future_keys<true>(ds, query, j0, lane);
#pragma unroll
    for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(fmaf(ds[n][e], scale_log2, -query_lse[e / 2]));
        ds[n][e] = p * (dprobs[n][e] - query_dot[e / 2]);
      }
    }
    accumulate_times_tile<F>(dq, ds, pick(s.k, buffer), lane);
  });
  add_rows<F>(dqkv + at.qkv_offset, 3 * C, dq, queries.warp_first, T, scale, lane);
}

// dK and dV for the block's keys: dv_j = Σ_{i>=j} p_ij dout_i, dk_j = scale Σ_{i>=j} ds_ij q_i
// over the query tiles from the block's diagonal on. The warp's products are transposed (keys
// are its rows, queries the tile's). Grid (key blocks, NH, B), the block with the most query
// tiles (the first keys) first.
// Up to head size 64 the registers are capped for three blocks an SM (twelve warps, against eight
// with the registers the compiler would otherwise take).
template <int F>
__global__ void __launch_bounds__(kThreads, F <= 4 ? 3 : 1)
    dkv_kernel(float* dqkv, HeadMajor dout, const float* lse, const float* row_dot, HeadMajor q,
               HeadMajor k, HeadMajor v, int T, int Tp, int C, int NH, float scale) {
  constexpr int hs = F * kFrag;
  const Place at(T, Tp, C, NH, hs);
  Carver carver{dynamic_shared_memory()};
  const DkvShared<F> s(carver);
  const FragmentLane lane;
  const BlockRows keys(blockIdx.x * kRows, at.warp, lane);
  const int k0 = keys.first;
  const int(&key)[2] = keys.mine;
  const float scale_log2 = scale * kLog2e;
  // A tile's statistics go through registers: read when its copies are queued, stored into its
  // buffer after the products on the tile before.
  float next_lse = 0.0f, next_dot = 0.0f;
  const auto stage = [&](int i0, int buffer) {
    stage_rows<F>(pick(s.q, buffer), at.rows(q, i0, hs));
    stage_rows<F>(pick(s.dout, buffer), at.rows(dout, i0, hs));
    commit_copies();
    const int i = i0 + static_cast<int>(threadIdx.x);
    if (threadIdx.x < kTile) {
      next_lse = i < T ? lse[at.stat_offset + i] * kLog2e : 0.0f;
      next_dot = i < T ? row_dot[at.stat_offset + i] : 0.0f;
    }
  };
  const auto store_stats = [&](int buffer) {
    if (threadIdx.x < kTile) {
      pick(s.lse, buffer)[threadIdx.x] = next_lse;
      pick(s.row_dot, buffer)[threadIdx.x] = next_dot;
    }
  };

  stage_rows<F>(s.k, at.rows(k, k0, hs));
  stage_rows<F>(s.v, at.rows(v, k0, hs));
  stage(k0, 0);
  store_stats(0);
  HeadResult<F> dk, dv;
  zero<F>(dk);
  zero<F>(dv);
  for_each_tile(k0, T, stage, [&](int i0, int buffer, bool more) {
    TileResult p, ds;  // transposed: [key][query]
    times_tile_transposed<F>(p, s.k + at.warp * kFrag * kHeadStride<F>, pick(s.q, buffer), lane);
    times_tile_transposed<F>(ds, s.v + at.warp * kFrag * kHeadStride<F>, pick(s.dout, buffer),
                             lane);
    if (i0 == k0) mask_future_keys<false>(p, key, i0, lane);
    const float* tile_lse = pick(s.lse, buffer);
    const float* tile_dot = pick(s.row_dot, buffer);
#pragma unroll
    for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = n * 8 + 2 * lane.t + e % 2;
        p[n][e] = exp2f(fmaf(p[n][e], scale_log2, -tile_lse[c]));
        ds[n][e] = p[n][e] * (ds[n][e] - tile_dot[c]);
      }
    }
    accumulate_times_tile<F>(dv, p, pick(s.dout, buffer), lane);
    accumulate_times_tile<F>(dk, ds, pick(s.q, buffer), lane);
    if (more) store_stats(1 - buffer);  // its last readers finished before this tile's sync
  });
  float* dst = dqkv + at.qkv_offset;
  add_rows<F>(dst + C, 3 * C, dk, keys.warp_first, T, scale, lane);
  add_rows<F>(dst + 2 * C, 3 * C, dv, keys.warp_first, T, 1.0f, lane);
}

}  // namespace ds::tensor::cuda::tc_attention
