// The kernels of tensor_core_attention.h, apart from their launches so that the tests can also
// build them against a CPU emulation of CUDA (test/emulated_cuda/), which checks their indexing,
// masking and synchronisation on machines without a GPU.
//
// The kernels read bf16 operands in place through strided views (Operand): Q, K and V straight
// from a bf16 qkv [B,T,3C], dout from a bf16 [B,T,C]; a head's hs values of a row are contiguous
// and 16-byte aligned. So every tile row is a run of whole 16-byte chunks, which the block copies
// into shared memory with cp.async (async_copy.cuh) while it multiplies the previous tile: two
// buffers per tile operand. Rows past T arrive as zeros without being read, so a partial last
// tile needs neither padding nor masking. A product that reads a tile along its other axis
// transposes it on the way into registers (ldmatrix .trans, warp_mma.cuh).
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
// accumulators stay in registers; so is the storage of the results (Out): fp32 outputs and
// gradients (the Ops contracts: out written, dqkv accumulated), or bf16 ones, which are written.
// Each kernel takes its shared memory dynamically: shared_bytes<ForwardShared<F>>(),
// <DqShared<F>>() or <DkvShared<F>>().
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "tensor/cuda/async_copy.cuh"
#include "tensor/cuda/device_primitives.cuh"
#include "tensor/cuda/storage_types.cuh"
#include "tensor/cuda/warp_mma.cuh"

namespace ds::tensor::cuda::tc_attention {

using detail::a_from_results;
using detail::commit_copies;
using detail::copy_async_16_or_zeros;
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

// One bf16 operand, as the host describes it: row t of head h of batch row b starts at
// base + b·batch_stride + h·head_stride + t·row_stride (elements), 16-byte aligned.
struct Operand {
  const Bf16* base;
  int64_t batch_stride, head_stride, row_stride;
};

// The kernels' views of qkv [B,T,3C] (Q, then K at +C and V at +2C) and of dout [B,T,C], for a
// head size of C / NH (dout may be nullptr: the forward reads none).
struct Operands {
  Operand q, k, v, dout;
  __host__ __device__ Operands(const Bf16* qkv, const Bf16* d, int T, int C, int NH)
      : q{qkv, int64_t{T} * 3 * C, C / NH, 3 * C},
        k{qkv + C, q.batch_stride, q.head_stride, q.row_stride},
        v{qkv + 2 * C, q.batch_stride, q.head_stride, q.row_stride},
        dout{d, int64_t{T} * C, C / NH, C} {}
};

// One (batch row, head)'s rows of an operand.
struct HeadRows {
  const Bf16* first;
  int64_t stride;
  __device__ const Bf16* row(int t) const { return first + int64_t{t} * stride; }
};

// Queues the copy of kRows rows of a head from row `first` (first < T) into dst
// [kRows][kHeadStride]; rows from T on become zeros (their source, never read, is row `first`).
template <int F>
__device__ __forceinline__ void stage_rows(Bf16* dst, const HeadRows& src, int first, int T) {
  constexpr int kChunks = F * kFrag / 8;  // 16-byte chunks per row
  for (int e = threadIdx.x; e < kRows * kChunks; e += kThreads) {
    const int r = e / kChunks, c = e % kChunks;
    const bool in_range = first + r < T;
    copy_async_16_or_zeros(dst + r * kHeadStride<F> + c * 8,
                           src.row(in_range ? first + r : first) + c * 8, in_range);
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
// past T need no mask: they are staged as zero rows (stage_rows), so they add nothing.
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

// Two adjacent values of a result row into p: fp32 ones added or written (kAdd), bf16 ones written
// as one rounded pair (4-byte aligned: results start at even columns).
template <bool kAdd>
__device__ __forceinline__ void put_pair(float* p, float first, float second) {
  if (kAdd) {
    p[0] += first;
    p[1] += second;
  } else {
    p[0] = first;
    p[1] = second;
  }
}
template <bool kAdd>
__device__ __forceinline__ void put_pair(Bf16* p, float first, float second) {
  static_assert(!kAdd, "bf16 results are written, not accumulated");
  *reinterpret_cast<uint32_t*>(p) = pack_bf16(first, second);
}

// Gradients accumulate into fp32 (the ops' contract) and are written in bf16 (the bf16 attention
// block's fresh buffers).
template <typename Out>
constexpr bool kGradientsAdd = std::is_same_v<Out, float>;

// Row first_row + g + 8r (r = 0, 1) of dst (rows row_stride apart) gets factor[r] · the warp's
// head result for that row (put_pair), for rows below T.
template <int F, bool kAdd, typename Out>
__device__ __forceinline__ void put_rows(Out* dst, int64_t row_stride, const HeadResult<F>& acc,
                                         int first_row, int T, const float (&factor)[2],
                                         FragmentLane lane) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = first_row + lane.g + 8 * r;
    if (t >= T) continue;
    Out* row = dst + int64_t{t} * row_stride + 2 * lane.t;
#pragma unroll
    for (int n = 0; n < 2 * F; ++n) {
      put_pair<kAdd>(row + n * 8, factor[r] * acc[n][2 * r], factor[r] * acc[n][2 * r + 1]);
    }
  }
}

// Where a block works: batch row b and head h (grid z and y), the warp, the head's columns of
// batch row b in the results dqkv [B,T,3C] (q; k at +C, v at +2C) and out [B,T,C], and in the
// [B,NH,T] statistics.
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
  __device__ HeadRows rows(const Operand& m) const {
    return {m.base + b * m.batch_stride + h * m.head_stride, m.row_stride};
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

// Queues the block's key and value tiles from row j0 into `buffer` of a forward's or dQ's shared
// memory.
template <int F, typename Shared>
__device__ __forceinline__ void stage_keys_values(const Shared& s, const Place& at,
                                                  const Operand& k, const Operand& v, int j0, int T,
                                                  int buffer) {
  stage_rows<F>(pick(s.k, buffer), at.rows(k), j0, T);
  stage_rows<F>(pick(s.v, buffer), at.rows(v), j0, T);
  commit_copies();
}

// Grid (query blocks, NH, B), the block with the most key tiles first. The scores are kept
// log2-scaled (scale·log2 e), so that each exponential is one exp2. out is written.
template <int F, typename Out>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(Out* out, float* lse, Operand q, Operand k, Operand v, int T, int C, int NH,
                   float scale) {
  const Place at(T, C, NH, F * kFrag);
  Carver carver{dynamic_shared_memory()};
  const ForwardShared<F> s(carver);
  const FragmentLane lane;
  const BlockRows queries((gridDim.x - 1 - blockIdx.x) * kRows, at.warp, lane);
  const int q0 = queries.first;
  const int(&query)[2] = queries.mine;
  const float scale_log2 = scale * kLog2e;
  const auto stage = [&](int j0, int buffer) { stage_keys_values<F>(s, at, k, v, j0, T, buffer); };

  stage_rows<F>(s.q, at.rows(q), q0, T);
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
    if (query[r] < T && lane.t == 0) {
      lse[at.stat_offset + query[r]] = row_max[r] / kLog2e + logf(row_sum[r]);
    }
  }
  const float inverse[2] = {1.0f / row_sum[0], 1.0f / row_sum[1]};
  put_rows<F, false>(out + at.row_offset, C, o, queries.warp_first, T, inverse, lane);
}

// dQ for the block's queries: dq_i = scale Σ_{j<=i} ds_ij k_j over the key tiles up to the
// block's diagonal, with p = exp(scale·score − lse) and ds = p (dout·v − row_dot). Grid as the
// forward's. dQ is added to an fp32 dqkv, written to a bf16 one.
template <int F, typename Out>
__global__ void __launch_bounds__(kThreads)
    dq_kernel(Out* dqkv, Operand dout, const float* lse, const float* row_dot, Operand q, Operand k,
              Operand v, int T, int C, int NH, float scale) {
  const Place at(T, C, NH, F * kFrag);
  Carver carver{dynamic_shared_memory()};
  const DqShared<F> s(carver);
  const FragmentLane lane;
  const BlockRows queries((gridDim.x - 1 - blockIdx.x) * kRows, at.warp, lane);
  const int q0 = queries.first;
  const int(&query)[2] = queries.mine;
  const float scale_log2 = scale * kLog2e;
  const auto stage = [&](int j0, int buffer) { stage_keys_values<F>(s, at, k, v, j0, T, buffer); };
  float query_lse[2], query_dot[2];  // log2-scaled; zeros past T (whose rows add nothing)
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const bool valid = query[r] < T;
    query_lse[r] = valid ? lse[at.stat_offset + query[r]] * kLog2e : 0.0f;
    query_dot[r] = valid ? row_dot[at.stat_offset + query[r]] : 0.0f;
  }

  stage_rows<F>(s.q, at.rows(q), q0, T);
  stage_rows<F>(s.dout, at.rows(dout), q0, T);
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
  const float factor[2] = {scale, scale};
  put_rows<F, kGradientsAdd<Out>>(dqkv + at.qkv_offset, 3 * C, dq, queries.warp_first, T, factor,
                                  lane);
}

// dK and dV for the block's keys: dv_j = Σ_{i>=j} p_ij dout_i, dk_j = scale Σ_{i>=j} ds_ij q_i
// over the query tiles from the block's diagonal on. The warp's products are transposed (keys
// are its rows, queries the tile's). Grid (key blocks, NH, B), the block with the most query
// tiles (the first keys) first.
// Up to head size 64 the registers are capped for three blocks an SM (twelve warps, against eight
// with the registers the compiler would otherwise take).
// dK and dV are added to an fp32 dqkv, written to a bf16 one.
template <int F, typename Out>
__global__ void __launch_bounds__(kThreads, F <= 4 ? 3 : 1)
    dkv_kernel(Out* dqkv, Operand dout, const float* lse, const float* row_dot, Operand q,
               Operand k, Operand v, int T, int C, int NH, float scale) {
  const Place at(T, C, NH, F * kFrag);
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
    stage_rows<F>(pick(s.q, buffer), at.rows(q), i0, T);
    stage_rows<F>(pick(s.dout, buffer), at.rows(dout), i0, T);
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

  stage_rows<F>(s.k, at.rows(k), k0, T);
  stage_rows<F>(s.v, at.rows(v), k0, T);
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
  Out* dst = dqkv + at.qkv_offset;
  const float dk_factor[2] = {scale, scale}, dv_factor[2] = {1.0f, 1.0f};
  put_rows<F, kGradientsAdd<Out>>(dst + C, 3 * C, dk, keys.warp_first, T, dk_factor, lane);
  put_rows<F, kGradientsAdd<Out>>(dst + 2 * C, 3 * C, dv, keys.warp_first, T, dv_factor, lane);
}

}  // namespace ds::tensor::cuda::tc_attention
