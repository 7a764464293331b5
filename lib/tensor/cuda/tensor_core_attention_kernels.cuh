// The kernels of tensor_core_attention.h, apart from their launches so that the tests can also
// build them against a CPU emulation of CUDA (test/emulated_cuda/), which checks their indexing,
// masking and synchronisation on machines without a GPU.
//
// A block has kWarps warps and owns kRows = 64 rows of one (batch row, head): queries in the
// forward and dQ kernels, keys in the dK/dV kernel; warp w owns rows 16w .. 16w+15 of them. The
// block walks the other side in tiles of kTile = 64 rows, which its threads stage in shared memory
// as bf16 (some also transposed, for the products that read them along the other axis). Per tile,
// each warp multiplies its rows with the tile on the tensor cores (mma.sync, warp_mma.cuh) into
// fp32 scores held in registers, turns them into probabilities (or their gradients) in place, and
// multiplies those, rounded to bf16 in registers, with the tile again into fp32 accumulators. So
// the softmax, its statistics and every sum stay in fp32 and in registers; a row's values are
// spread over the four lanes of a quad, which reduce with two shuffles.
//
// The head size is a template parameter (F fragments of 16), so the loops over it unroll and the
// accumulators stay in registers. Each kernel takes its shared memory dynamically:
// shared_bytes<ForwardShared<F>>(), <DqShared<F>>() or <DkvShared<F>>().
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "tensor/cuda/device_primitives.cuh"
#include "tensor/cuda/warp_mma.cuh"

namespace ds::tensor::cuda::tc_attention {

using detail::a_from_results;
using detail::dynamic_shared_memory;
using detail::FragmentLane;
using detail::kWarp;
using detail::load_a;
using detail::load_b_transposed;
using detail::mma_bf16;
using detail::pack_bf16;

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

// Row strides in shared memory, in bf16. The 8 of padding puts the rows a fragment load reads
// (8 rows, 4 lanes each, 4 bytes apart) in 32 different banks, for every head size here.
template <int F>
constexpr int kHeadStride = F* kFrag + 8;     // [tile row][head column]
constexpr int kTransposedStride = kTile + 8;  // [head column][tile row]

// The warp's result fragments across a tile (16 x kTile scores) and across a head (16 x F·16).
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
template <int F>
__host__ __device__ Bf16* take_transposed(Carver& c) {
  return c.take<Bf16>(size_t{F * kFrag} * kTransposedStride);
}

// The forward's shared memory: the block's queries, the tile's keys, and its values transposed.
template <int F>
struct ForwardShared {
  Bf16 *q, *k, *v_t;
  __host__ __device__ explicit ForwardShared(Carver& c)
      : q(take_rows<F>(c)), k(take_rows<F>(c)), v_t(take_transposed<F>(c)) {}
};

// dQ's: the block's queries and dout rows, the tile's keys (also transposed) and values.
template <int F>
struct DqShared {
  Bf16 *q, *dout, *k, *k_t, *v;
  __host__ __device__ explicit DqShared(Carver& c)
      : q(take_rows<F>(c)),
        dout(take_rows<F>(c)),
        k(take_rows<F>(c)),
        k_t(take_transposed<F>(c)),
        v(take_rows<F>(c)) {}
};

// dK/dV's: the block's keys and values, the tile's queries and dout rows (each also transposed),
// and the tile's log-sum-exp (log2-scaled) and row_dot.
template <int F>
struct DkvShared {
  Bf16 *k, *v, *q, *q_t, *dout, *dout_t;
  float *lse, *row_dot;
  __host__ __device__ explicit DkvShared(Carver& c)
      : k(take_rows<F>(c)),
        v(take_rows<F>(c)),
        q(take_rows<F>(c)),
        q_t(take_transposed<F>(c)),
        dout(take_rows<F>(c)),
        dout_t(take_transposed<F>(c)),
        lse(c.take<float>(kTile)),
        row_dot(c.take<float>(kTile)) {}
};

template <typename Shared>
inline size_t shared_bytes() {
  Carver c{nullptr};
  const Shared layout(c);
  (void)layout;
  return c.used;
}

// Four consecutive floats of a row, zeros for a row past T; one 16-byte load when `p` allows.
struct alignas(16) Quad {
  float x[4];
};
__device__ __forceinline__ Quad load_quad(const float* p, bool in_range, bool vector) {
  if (!in_range) return Quad{{0.0f, 0.0f, 0.0f, 0.0f}};
  if (vector) return *reinterpret_cast<const Quad*>(p);
  return Quad{{p[0], p[1], p[2], p[3]}};
}
__device__ __forceinline__ bool quad_aligned(const float* src, int64_t row_stride) {
  return reinterpret_cast<uintptr_t>(src) % sizeof(Quad) == 0 && row_stride % 4 == 0;
}

// Rows first .. first+kRows-1 of the fp32 matrix at `src` (row t at src + t·row_stride, a head's
// F·16 columns) into dst [kRows][kHeadStride] as bf16, zeros past T. The whole block calls it.
template <int F>
__device__ void load_rows(Bf16* dst, const float* src, int64_t row_stride, int T, int first) {
  struct alignas(8) Pairs {
    uint32_t low, high;
  };
  constexpr int kQuads = F * kFrag / 4;
  const bool vector = quad_aligned(src, row_stride);
  for (int e = threadIdx.x; e < kRows * kQuads; e += kThreads) {
    const int r = e / kQuads, d = e % kQuads * 4, t = first + r;
    const Quad x = load_quad(src + int64_t{t} * row_stride + d, t < T, vector);
    *reinterpret_cast<Pairs*>(dst + r * kHeadStride<F> + d) =
        Pairs{pack_bf16(x.x[0], x.x[1]), pack_bf16(x.x[2], x.x[3])};
  }
}

// The same rows transposed: dst [F·16][kTransposedStride], dst[d][r] = row first+r, column d.
// Consecutive lanes take consecutive rows, so their 2-byte stores share no bank.
template <int F>
__device__ void load_rows_transposed(Bf16* dst, const float* src, int64_t row_stride, int T,
                                     int first) {
  constexpr int kQuads = F * kFrag / 4;
  const bool vector = quad_aligned(src, row_stride);
  for (int e = threadIdx.x; e < kRows * kQuads; e += kThreads) {
    const int r = e % kRows, d = e / kRows * 4, t = first + r;
    const Quad x = load_quad(src + int64_t{t} * row_stride + d, t < T, vector);
#pragma unroll
    for (int c = 0; c < 4; ++c) dst[(d + c) * kTransposedStride + r] = __float2bfloat16(x.x[c]);
  }
}

// result = rows · tileᵀ: the warp's 16 rows of a head (bf16 at `rows`, stride kHeadStride)
// against the tile's kTile rows (at `tile`, the same stride), 16 x kTile in fp32.
template <int F>
__device__ void times_tile_transposed(TileResult& result, const Bf16* rows, const Bf16* tile,
                                      FragmentLane lane) {
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
    for (int n = 0; n < kTileColumns; ++n) {
      // B(k, n) = tile[n][k]: the tile's rows are B's columns.
      uint32_t b[2];
      load_b_transposed(b, tile + n * 8 * kHeadStride<F> + k * kFrag, kHeadStride<F>, lane);
      mma_bf16(result[n], a, b);
    }
  }
}

// acc (16 rows of a head) += weights · tile: the warp's 16 x kTile weights (result fragments,
// rounded to bf16 here) against the tile's kTile rows, which `tile_t` holds transposed.
template <int F>
__device__ void accumulate_times_tile(HeadResult<F>& acc, const TileResult& weights,
                                      const Bf16* tile_t, FragmentLane lane) {
#pragma unroll
  for (int k = 0; k < kTile / kFrag; ++k) {
    uint32_t a[4];
    a_from_results(a, weights[2 * k], weights[2 * k + 1]);
#pragma unroll
    for (int n = 0; n < 2 * F; ++n) {
      uint32_t b[2];  // B(k, n) = tile[k][n] = tile_t[n][k]
      load_b_transposed(b, tile_t + n * 8 * kTransposedStride + k * kFrag, kTransposedStride, lane);
      mma_bf16(acc[n], a, b);
    }
  }
}

template <int F>
__device__ void zero(HeadResult<F>& acc) {
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

// Row first_row + g + 8r (r = 0, 1) of dst (rows row_stride apart) += factor · the warp's head
// result for that row, for rows below T.
template <int F>
__device__ void add_rows(float* dst, int64_t row_stride, const HeadResult<F>& acc, int first_row,
                         int T, float factor, FragmentLane lane) {
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

// Where a block works: batch row b and head h (grid z and y), the warp, and the head's columns
// of batch row b in qkv (q; k at +C, v at +2C), in the [B,T,C] activations and in the [B,NH,T]
// statistics.
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

// Grid (query blocks, NH, B), the block with the most key tiles first. The scores are kept
// log2-scaled (scale·log2 e), so that each exponential is one exp2.
template <int F>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(float* out, float* lse, const float* qkv, int T, int C, int NH, float scale) {
  constexpr int hs = F * kFrag;
  const Place at(T, C, NH, hs);
  Carver carver{dynamic_shared_memory()};
  const ForwardShared<F> s(carver);
  const FragmentLane lane;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;
  const int first_row = q0 + at.warp * kFrag;
  const int query[2] = {first_row + lane.g, first_row + lane.g + 8};
  const float scale_log2 = scale * kLog2e;
  const float* heads = qkv + at.qkv_offset;

  load_rows<F>(s.q, heads, 3 * C, T, q0);
  HeadResult<F> o;
  zero<F>(o);
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};  // sums: this lane's
  for (int j0 = 0; j0 <= q0; j0 += kTile) {
    __syncthreads();  // every warp is done with the previous tile (and q is loaded)
    load_rows<F>(s.k, heads + C, 3 * C, T, j0);
    load_rows_transposed<F>(s.v_t, heads + 2 * C, 3 * C, T, j0);
    __syncthreads();
    TileResult p;
    times_tile_transposed<F>(p, s.q + at.warp * kFrag * kHeadStride<F>, s.k, lane);
    // Only the diagonal tile has keys after a query. Every row sees key j0 <= q0, so each max
    // is finite.
    const bool diagonal = j0 == q0;
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = j0 + n * 8 + 2 * lane.t + e % 2;
        p[n][e] = diagonal && key > query[e / 2] ? -INFINITY : p[n][e] * scale_log2;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], p[n][e]);
      }
    }
    float rescale[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float new_max = fmaxf(row_max[r], quad_max(tile_max[r]));
      rescale[r] = exp2f(row_max[r] - new_max);  // 0 on the first tile
      row_max[r] = new_max;
      row_sum[r] *= rescale[r];
    }
#pragma unroll
    for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[n][e] = exp2f(p[n][e] - row_max[e / 2]);  // 0 where masked
        row_sum[e / 2] += p[n][e];
      }
    }
#pragma unroll
    for (int n = 0; n < 2 * F; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[n][e] *= rescale[e / 2];
    }
    accumulate_times_tile<F>(o, p, s.v_t, lane);
  }
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
    dq_kernel(float* dqkv, const float* dout, const float* lse, const float* row_dot,
              const float* qkv, int T, int C, int NH, float scale) {
  constexpr int hs = F * kFrag;
  const Place at(T, C, NH, hs);
  Carver carver{dynamic_shared_memory()};
  const DqShared<F> s(carver);
  const FragmentLane lane;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;
  const int first_row = q0 + at.warp * kFrag;
  const int query[2] = {first_row + lane.g, first_row + lane.g + 8};
  const float scale_log2 = scale * kLog2e;
  const float* heads = qkv + at.qkv_offset;
  float query_lse[2], query_dot[2];  // log2-scaled; zeros past T, whose rows are masked
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const bool valid = query[r] < T;
    query_lse[r] = valid ? lse[at.stat_offset + query[r]] * kLog2e : 0.0f;
    query_dot[r] = valid ? row_dot[at.stat_offset + query[r]] : 0.0f;
  }

  load_rows<F>(s.q, heads, 3 * C, T, q0);
  load_rows<F>(s.dout, dout + at.row_offset, C, T, q0);
  HeadResult<F> dq;
  zero<F>(dq);
  for (int j0 = 0; j0 <= q0; j0 += kTile) {
    __syncthreads();
    load_rows<F>(s.k, heads + C, 3 * C, T, j0);
    load_rows_transposed<F>(s.k_t, heads + C, 3 * C, T, j0);
    load_rows<F>(s.v, heads + 2 * C, 3 * C, T, j0);
    __syncthreads();
    TileResult ds, dprobs;
    times_tile_transposed<F>(ds, s.q + at.warp * kFrag * kHeadStride<F>, s.k, lane);
    times_tile_transposed<F>(dprobs, s.dout + at.warp * kFrag * kHeadStride<F>, s.v, lane);
    const bool diagonal = j0 == q0;
#pragma unroll
    for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e / 2, key = j0 + n * 8 + 2 * lane.t + e % 2;
        const bool seen = query[r] < T && !(diagonal && key > query[r]);
        const float p = seen ? exp2f(ds[n][e] * scale_log2 - query_lse[r]) : 0.0f;
        ds[n][e] = p * (dprobs[n][e] - query_dot[r]);
      }
    }
    accumulate_times_tile<F>(dq, ds, s.k_t, lane);
  }
  add_rows<F>(dqkv + at.qkv_offset, 3 * C, dq, first_row, T, scale, lane);
}

// dK and dV for the block's keys: dv_j = Σ_{i>=j} p_ij dout_i, dk_j = scale Σ_{i>=j} ds_ij q_i
// over the query tiles from the block's diagonal on. The warp's products are transposed (keys
// are its rows, queries the tile's). Grid (key blocks, NH, B), the block with the most query
// tiles (the first keys) first.
template <int F>
__global__ void __launch_bounds__(kThreads)
    dkv_kernel(float* dqkv, const float* dout, const float* lse, const float* row_dot,
               const float* qkv, int T, int C, int NH, float scale) {
  constexpr int hs = F * kFrag;
  const Place at(T, C, NH, hs);
  Carver carver{dynamic_shared_memory()};
  const DkvShared<F> s(carver);
  const FragmentLane lane;
  const int k0 = blockIdx.x * kRows;
  const int first_row = k0 + at.warp * kFrag;
  const int key[2] = {first_row + lane.g, first_row + lane.g + 8};
  const float scale_log2 = scale * kLog2e;
  const float* heads = qkv + at.qkv_offset;

  load_rows<F>(s.k, heads + C, 3 * C, T, k0);
  load_rows<F>(s.v, heads + 2 * C, 3 * C, T, k0);
  HeadResult<F> dk, dv;
  zero<F>(dk);
  zero<F>(dv);
  for (int i0 = k0; i0 < T; i0 += kTile) {
    __syncthreads();
    load_rows<F>(s.q, heads, 3 * C, T, i0);
    load_rows_transposed<F>(s.q_t, heads, 3 * C, T, i0);
    load_rows<F>(s.dout, dout + at.row_offset, C, T, i0);
    load_rows_transposed<F>(s.dout_t, dout + at.row_offset, C, T, i0);
    for (int c = threadIdx.x; c < kTile; c += kThreads) {
      const int i = i0 + c;
      s.lse[c] = i < T ? lse[at.stat_offset + i] * kLog2e : 0.0f;
      s.row_dot[c] = i < T ? row_dot[at.stat_offset + i] : 0.0f;
    }
    __syncthreads();
    TileResult p, ds;  // transposed: [key][query]
    times_tile_transposed<F>(p, s.k + at.warp * kFrag * kHeadStride<F>, s.q, lane);
    times_tile_transposed<F>(ds, s.v + at.warp * kFrag * kHeadStride<F>, s.dout, lane);
    const bool diagonal = i0 == k0;
#pragma unroll
    for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = n * 8 + 2 * lane.t + e % 2, query = i0 + c;
        const bool seen = query < T && !(diagonal && key[e / 2] > query);
        p[n][e] = seen ? exp2f(p[n][e] * scale_log2 - s.lse[c]) : 0.0f;
        ds[n][e] = p[n][e] * (ds[n][e] - s.row_dot[c]);
      }
    }
    accumulate_times_tile<F>(dv, p, s.dout_t, lane);
    accumulate_times_tile<F>(dk, ds, s.q_t, lane);
  }
  float* dst = dqkv + at.qkv_offset;
  add_rows<F>(dst + C, 3 * C, dk, first_row, T, scale, lane);
  add_rows<F>(dst + 2 * C, 3 * C, dv, first_row, T, 1.0f, lane);
}

}  // namespace ds::tensor::cuda::tc_attention
