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
// forward and dQ also come with 128-row blocks, whose warps own 32 rows each, two 16-row fragments
// that share every key and value fragment a warp loads from shared memory (FlashAttention-2's
// forward shape): half the shared-memory reads per product, for twice the registers. The two shapes
// compute every row with the same operations in the same order, so their results are the same
// bit for bit. The block walks the other side in tiles of kTile = 64 rows. Per tile, each warp
// multiplies its rows
// with the tile on the tensor cores (mma.sync, warp_mma.cuh) into fp32 scores held in registers,
// turns them into probabilities (or their gradients) in place, and multiplies those, rounded to
// bf16 in registers, with the tile again into fp32 accumulators. So the softmax, its statistics
// and every sum stay in fp32 and in registers; a row's values are spread over the four lanes of a
// quad, which reduce with two shuffles.
//
// The head size is a template parameter (F fragments of 16), so the loops over it unroll and the
// accumulators stay in registers; so is the storage of the results (Out): fp32 outputs and
// gradients (the Ops contracts: out written, dqkv accumulated), or bf16 ones, which are written.
// Each kernel takes its shared memory dynamically: shared_bytes<ForwardShared<F, M>>(),
// <DqShared<F, M>>() or <DkvShared<F>>().
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
using detail::exp2_flushed;
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
constexpr int kRows = kWarps * kFrag;     // rows a block owns: 64 (forward, dQ: 64 or 128)
constexpr int kTile = kRows;              // rows of the other side per tile; the causal loop
                                          // bounds of dQ and dK/dV rely on the two being equal
constexpr int kThreads = kWarps * kWarp;  // 128
constexpr int kMaxFrags = 8;              // head size 128
constexpr int kTileColumns = kTile / 8;   // 8-column result fragments across a tile
constexpr float kLog2e = 1.4426950408889634f;

// The row stride in shared memory, in bf16 ([tile row][head column]). With the 8 of padding a
// row is an odd number of 16-byte units long, so the eight rows an ldmatrix phase reads fall in
// different banks, for every head size here.
template <int F>
constexpr int kHeadStride = F* kFrag + 8;  // [tile row][head column]

// The warp's result fragments across a tile (16 x kTile scores) and across a head (16 x F·16),
// and M of each for a warp that owns M 16-row fragments. The helpers below that take them by
// reference are forced inline, which keeps them in registers.
using TileResult = float[kTileColumns][4];
template <int F>
using HeadResult = float[2 * F][4];
template <int M>
using TileResults = TileResult[M];
template <int F, int M>
using HeadResults = HeadResult<F>[M];

// Rows a forward or dQ block owns when each warp owns M fragments of 16.
template <int M>
constexpr int kBlockRows = kRows* M;
// Up to head size 64 every kernel has a second variant (variant 1): the forward and dQ with two
// row fragments a warp, dK/dV holding its fragments in registers. Above it their accumulators or
// held fragments would not fit in a thread's registers. A variant a head size lacks is variant 0.
template <int F>
constexpr bool kHasVariants = F <= 4;
template <int F, int V>  // the row fragments a forward or dQ warp takes in variant V
constexpr int kRowFrags = V == 1 && kHasVariants<F> ? 2 : 1;
template <int F, int V>  // whether dK/dV holds its fragments in variant V
constexpr bool kHoldsFragments = V == 1 && kHasVariants<F>;

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

template <int F, int kCount = kRows>
__host__ __device__ Bf16* take_rows(Carver& c) {
  return c.take<Bf16>(size_t{kCount} * kHeadStride<F>);
}

// The forward's shared memory: the block's queries (kBlockRows<M>), and per buffer the tile's
// keys and values.
template <int F, int M>
struct ForwardShared {
  Bf16 *q, *k[2], *v[2];
  __host__ __device__ explicit ForwardShared(Carver& c) : q(take_rows<F, kBlockRows<M>>(c)) {
    for (int b = 0; b < 2; ++b) {
      k[b] = take_rows<F>(c);
      v[b] = take_rows<F>(c);
    }
  }
};

// dQ's: the block's queries and dout rows (kBlockRows<M> each), per buffer the tile's keys and
// values.
template <int F, int M = 1>
struct DqShared {
  Bf16 *q, *dout, *k[2], *v[2];
  __host__ __device__ explicit DqShared(Carver& c)
      : q(take_rows<F, kBlockRows<M>>(c)), dout(take_rows<F, kBlockRows<M>>(c)) {
    for (int b = 0; b < 2; ++b) {
      k[b] = take_rows<F>(c);
      v[b] = take_rows<F>(c);
    }
  }
};

// A tile's statistics of two neighbouring queries, as dK/dV keeps them in shared memory: a lane
// reads the pair its result columns 2t and 2t + 1 need in one 16-byte load.
struct alignas(16) QueryPairStats {
  float lse[2];      // log2-scaled
  float row_dot[2];  // Σ dout·out of the row
};

// dK/dV's: the block's keys and values, per buffer the tile's queries and dout rows and their
// statistics (kTile / 2 pairs).
template <int F>
struct DkvShared {
  Bf16 *k, *v, *q[2], *dout[2];
  QueryPairStats* stats[2];
  __host__ __device__ explicit DkvShared(Carver& c) : k(take_rows<F>(c)), v(take_rows<F>(c)) {
    for (int b = 0; b < 2; ++b) {
      q[b] = take_rows<F>(c);
      dout[b] = take_rows<F>(c);
      stats[b] = c.take<QueryPairStats>(kTile / 2);
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

// Queues the copy of kCount rows of a head from row `first` (first < T) into dst
// [kCount][kHeadStride]; rows from T on become zeros (their source, never read, is row `first`).
template <int F, int kCount = kRows>
__device__ __forceinline__ void stage_rows(Bf16* dst, const HeadRows& src, int first, int T) {
  constexpr int kChunks = F * kFrag / 8;  // 16-byte chunks per row
  for (int e = threadIdx.x; e < kCount * kChunks; e += kThreads) {
    const int r = e / kChunks, c = e % kChunks;
    const bool in_range = first + r < T;
    copy_async_16_or_zeros(dst + r * kHeadStride<F> + c * 8,
                           src.row(in_range ? first + r : first) + c * 8, in_range);
  }
}

// A's fragments of the warp's M fragments of 16 rows of a head, as times_tile_transposed reads
// them: from shared memory at each use (SharedRows), or loaded once and held in registers
// (HeldRows: F·M·4 more registers a thread, for a kernel whose rows stay while it walks the
// tiles). Either way the products get the same operands.
template <int F, int M>
struct SharedRows {
  const Bf16* rows;  // fragment m from row 16m, rows kHeadStride apart
  __device__ __forceinline__ void fragment(uint32_t (&a)[4], int m, int k,
                                           FragmentLane lane) const {
    load_a(a, rows + m * kFrag * kHeadStride<F> + k * kFrag, kHeadStride<F>, lane);
  }
};
template <int F, int M>
struct HeldRows {
  uint32_t held[M][F][4];
  __device__ __forceinline__ void load(const Bf16* rows, FragmentLane lane) {
    const SharedRows<F, M> from{rows};
#pragma unroll
    for (int m = 0; m < M; ++m) {
#pragma unroll
      for (int k = 0; k < F; ++k) from.fragment(held[m][k], m, k, lane);
    }
  }
  __device__ __forceinline__ void fragment(uint32_t (&a)[4], int m, int k, FragmentLane) const {
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = held[m][k][i];
  }
};

// result[m] = rows · tileᵀ for the warp's M fragments of 16 rows of a head (SharedRows or
// HeldRows) against the tile's kTile rows (bf16 at `tile`, stride kHeadStride), 16 x kTile each
// in fp32. Each of the tile's fragments is loaded once for the M products.
template <int F, int M, typename Rows>
__device__ __forceinline__ void times_tile_transposed(TileResults<M>& result, const Rows& rows,
                                                      const Bf16* tile, FragmentLane lane) {
#pragma unroll
  for (int m = 0; m < M; ++m) {
#pragma unroll
    for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) result[m][n][e] = 0.0f;
    }
  }
#pragma unroll
  for (int k = 0; k < F; ++k) {
    uint32_t a[M][4];
#pragma unroll
    for (int m = 0; m < M; ++m) rows.fragment(a[m], m, k, lane);
#pragma unroll
    for (int n = 0; n < kTileColumns; n += 2) {
      // B(k, n) = tile[n][k]: the tile's rows are B's columns.
      uint32_t b[2], b_next[2];
      load_b_pair<true>(b, b_next, tile + n * 8 * kHeadStride<F> + k * kFrag, kHeadStride<F>, lane);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        mma_bf16(result[m][n], a[m], b);
        mma_bf16(result[m][n + 1], a[m], b_next);
      }
    }
  }
}

// acc[m] (16 rows of a head each) += weights[m] · tile: the warp's M fragments of 16 x kTile
// weights (result fragments, rounded to bf16 here) against the tile's kTile rows (bf16 at `tile`,
// stride kHeadStride), read transposed into B's fragments, each loaded once for the M products.
template <int F, int M>
__device__ __forceinline__ void accumulate_times_tile(HeadResults<F, M>& acc,
                                                      const TileResults<M>& weights,
                                                      const Bf16* tile, FragmentLane lane) {
#pragma unroll
  for (int k = 0; k < kTile / kFrag; ++k) {
    uint32_t a[M][4];
#pragma unroll
    for (int m = 0; m < M; ++m) a_from_results(a[m], weights[m][2 * k], weights[m][2 * k + 1]);
#pragma unroll
    for (int n = 0; n < 2 * F; n += 2) {
      uint32_t b[2], b_next[2];  // B(k, n) = tile[k][n]
      load_b_pair<false>(b, b_next, tile + k * kFrag * kHeadStride<F> + n * 8, kHeadStride<F>,
                         lane);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        mma_bf16(acc[m][n], a[m], b);
        mma_bf16(acc[m][n + 1], a[m], b_next);
      }
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
// (dK/dV, whose products are transposed). Only the tiles that reach the block's own rows have
// such keys (one tile; two for 128-row blocks). Rows and columns
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

// The qkv bias gradient's partial sums, which the backward kernels write beside a bf16 dqkv
// (nullptr: none), so that nothing reads dqkv again for them: per 64 rows of a batch row, the
// column sums of the values written there (rows below T), in [B · ⌈T/64⌉][3C] ordered as qkv's
// rows. column_sum then adds them in row order. put_rows sums the columns of a warp's 16-row
// fragment as it writes it (the quad's two rows, then across the eight quads by shuffles) into a
// slot of shared memory; write_bias_partials then adds each 64 rows' four fragment slots in row
// order, so that 64- and 128-row blocks give the same sums bit for bit.
__host__ __device__ inline int bias_partial_chunks(int T) { return (T + kRows - 1) / kRows; }
inline int bias_partial_rows(int B, int T) { return B * bias_partial_chunks(T); }

// A value as put_pair stores it in Out, widened back: the bf16 rounding, or the fp32 value.
template <typename Out>
__device__ __forceinline__ float as_stored(float value) {
  if constexpr (std::is_same_v<Out, float>) {
    return value;
  } else {
    return __bfloat162float(__float2bfloat16(value));
  }
}

// Row first_row + g + 8r (r = 0, 1) of dst (rows row_stride apart) gets factor[r] · the warp's
// head result for that row (put_pair), for rows below T. Where `column_sums` is not nullptr (a
// slot of shared memory), column_sums[head column] also gets the sum of the column's values as
// stored, over the fragment's rows below T.
template <int F, bool kAdd, typename Out>
__device__ __forceinline__ void put_rows(Out* dst, int64_t row_stride, const HeadResult<F>& acc,
                                         int first_row, int T, const float (&factor)[2],
                                         FragmentLane lane, float* column_sums = nullptr) {
  float sums[2 * F][2] = {};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = first_row + lane.g + 8 * r;
    if (t >= T) continue;
    Out* row = dst + int64_t{t} * row_stride + 2 * lane.t;
#pragma unroll
    for (int n = 0; n < 2 * F; ++n) {
      // Rounded here, so that the sums add exactly what is stored (bf16 rounds once).
      const float first = as_stored<Out>(factor[r] * acc[n][2 * r]);
      const float second = as_stored<Out>(factor[r] * acc[n][2 * r + 1]);
      put_pair<kAdd>(row + n * 8, first, second);
      sums[n][0] += first;
      sums[n][1] += second;
    }
  }
  if (column_sums == nullptr) return;
#pragma unroll
  for (int n = 0; n < 2 * F; ++n) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      float sum = sums[n][j];
      sum += __shfl_xor_sync(0xffffffffu, sum, 4);
      sum += __shfl_xor_sync(0xffffffffu, sum, 8);
      sum += __shfl_xor_sync(0xffffffffu, sum, 16);
      if (lane.g == 0) column_sums[n * 8 + 2 * lane.t + j] = sum;
    }
  }
}

// The slots of a backward block's column sums in shared memory, free once the block has walked
// its tiles: [result][16-row fragment of the block, in row order][head column], for kResults
// results of blocks of kBlockRows<M> rows.
template <int F, int M, int kResults>
struct BiasSlots {
  static constexpr int kHead = F * kFrag;
  static constexpr int kFragments = kBlockRows<M> / kFrag;
  static_assert(kResults * kFragments * kHead * sizeof(float) <=
                    2 * kRows * kHeadStride<F> * sizeof(Bf16),
                "the slots, from the start of shared memory, fit in the two 64-row tiles that "
                "every backward kernel's layout has at least");
  float* base;
  __device__ float* slot(int result, int fragment) const {
    return base + (result * kFragments + fragment) * kHead;
  }
};

// After every warp has put its fragments (with their column sums) into `slots`: the partial sums
// of the block's kBlockRows<M> rows from first_row (a multiple of 64) into `partials`, result i's
// at column columns[i] of a row of 3C (0 for Q, C for K, 2C for V). Shared memory is left
// holding the slots: a later use would need a barrier first.
template <int F, int M, int kResults>
__device__ __forceinline__ void write_bias_partials(float* partials,
                                                    const BiasSlots<F, M, kResults>& slots,
                                                    const int (&columns)[kResults], int first_row,
                                                    int b, int h, int T, int C) {
  constexpr int kHead = BiasSlots<F, M, kResults>::kHead;
  constexpr int kQuarters = kRows / kFrag;  // fragments per 64 rows
  __syncthreads();
  const int chunks = bias_partial_chunks(T);
  for (int e = threadIdx.x; e < kResults * M * kHead; e += kThreads) {
    const int i = e / (M * kHead), half = e / kHead % M, c = e % kHead;
    const int first = first_row + half * kRows;
    if (first >= T) continue;
    const float* slot = slots.slot(i, half * kQuarters) + c;
    float total = 0.0f;
    for (int f = 0; f < kQuarters; ++f) total += slot[f * kHead];
    partials[(int64_t{b} * chunks + first / kRows) * 3 * C + columns[i] + h * kHead + c] = total;
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

// The rows a block owns (queries, or keys in dK/dV) from `first`, the warp's M·16 from
// warp_first, and the calling lane's two in each of its result fragments (rows g and g + 8 of
// fragment m's 16).
template <int M = 1>
struct BlockRows {
  int first, warp_first, mine[M][2];
  __device__ BlockRows(int first_row, int warp, FragmentLane lane)
      : first(first_row), warp_first(first_row + warp * M * kFrag) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      mine[m][0] = warp_first + m * kFrag + lane.g;
      mine[m][1] = mine[m][0] + 8;
    }
  }

  // For query rows (the forward and dQ): the key tiles from 0 below key_tiles_end are those up
  // to the block's last row, below T; a warp skips a tile after all of its rows and masks one
  // that reaches past its first. A 64-row block walks up to its first row, masks only that tile
  // and skips none (spelled so, which keeps its registers where they were).
  __device__ int key_tiles_end(int T) const {
    if (M == 1) return first + 1;
    return first + kBlockRows<M> < T ? first + kBlockRows<M> : T;
  }
  __device__ bool skips_tile(int j0) const { return M > 1 && j0 >= warp_first + M * kFrag; }
  __device__ bool masks_tile(int j0) const {
    return M == 1 ? j0 == first : j0 + kTile > warp_first;
  }
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

// Grid (query blocks of kBlockRows<M>, NH, B), the block with the most key tiles first. The
// scores are kept log2-scaled (scale·log2 e), so that each exponential is one exp2. out is
// written.
template <int F, int M, typename Out>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(Out* out, float* lse, Operand q, Operand k, Operand v, int T, int C, int NH,
                   float scale) {
  constexpr int kOwn = kBlockRows<M>;
  const Place at(T, C, NH, F * kFrag);
  Carver carver{dynamic_shared_memory()};
  const ForwardShared<F, M> s(carver);
  const FragmentLane lane;
  const BlockRows<M> queries((gridDim.x - 1 - blockIdx.x) * kOwn, at.warp, lane);
  const int q0 = queries.first;
  const float scale_log2 = scale * kLog2e;
  const auto stage = [&](int j0, int buffer) { stage_keys_values<F>(s, at, k, v, j0, T, buffer); };

  stage_rows<F, kOwn>(s.q, at.rows(q), q0, T);
  stage(0, 0);
  HeadResults<F, M> o;
  float row_max[M][2], row_sum[M][2];  // sums: this lane's
#pragma unroll
  for (int m = 0; m < M; ++m) {
    zero<F>(o[m]);
    row_max[m][0] = row_max[m][1] = -INFINITY;
    row_sum[m][0] = row_sum[m][1] = 0.0f;
  }
  for_each_tile(0, queries.key_tiles_end(T), stage, [&](int j0, int buffer, bool) {
    if (queries.skips_tile(j0)) return;
    TileResults<M> p;
    times_tile_transposed<F, M>(p, SharedRows<F, M>{s.q + at.warp * M * kFrag * kHeadStride<F>},
                                pick(s.k, buffer), lane);
    // Every row sees key j0 <= its own, so each max is finite. The maximum of the raw scores,
    // scaled, is the maximum of the scaled ones (scale > 0).
    if (queries.masks_tile(j0)) {
#pragma unroll
      for (int m = 0; m < M; ++m) mask_future_keys<true>(p[m], queries.mine[m], j0, lane);
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) tile_max[e / 2] = fmaxf(tile_max[e / 2], p[m][n][e]);
      }
      float rescale[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float new_max = fmaxf(row_max[m][r], quad_max(tile_max[r]) * scale_log2);
        rescale[r] = exp2_flushed(row_max[m][r] - new_max);  // 0 on the first tile
        row_max[m][r] = new_max;
        row_sum[m][r] *= rescale[r];
      }
#pragma unroll
      for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          p[m][n][e] =
              exp2_flushed(fmaf(p[m][n][e], scale_log2, -row_max[m][e / 2]));  // 0 where masked
          row_sum[m][e / 2] += p[m][n][e];
        }
      }
#pragma unroll
      for (int n = 0; n < 2 * F; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) o[m][n][e] *= rescale[e / 2];
      }
    }
    accumulate_times_tile<F, M>(o, p, pick(s.v, buffer), lane);
  });
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float inverse[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float sum = quad_sum(row_sum[m][r]);
      const int query = queries.mine[m][r];
      if (query < T && lane.t == 0) {
        lse[at.stat_offset + query] = row_max[m][r] / kLog2e + logf(sum);
      }
      inverse[r] = 1.0f / sum;
    }
    put_rows<F, false>(out + at.row_offset, C, o[m], queries.warp_first + m * kFrag, T, inverse,
                       lane);
  }
}

// dQ for the block's queries: dq_i = scale Σ_{j<=i} ds_ij k_j over the key tiles up to the
// block's last row, with p = exp(scale·score − lse) and ds = p (dout·v − row_dot). Grid and
// block shapes as the forward's. dQ is added to an fp32 dqkv, written to a bf16 one (with its bias
// partials where bias_partials is not nullptr).
template <int F, int M, typename Out>
__global__ void __launch_bounds__(kThreads)
    dq_kernel(Out* dqkv, float* bias_partials, Operand dout, const float* lse, const float* row_dot,
              Operand q, Operand k, Operand v, int T, int C, int NH, float scale) {
  constexpr int kOwn = kBlockRows<M>;
  const Place at(T, C, NH, F * kFrag);
  Carver carver{dynamic_shared_memory()};
  const DqShared<F, M> s(carver);
  const FragmentLane lane;
  const BlockRows<M> queries((gridDim.x - 1 - blockIdx.x) * kOwn, at.warp, lane);
  const int q0 = queries.first;
  const float scale_log2 = scale * kLog2e;
  const auto stage = [&](int j0, int buffer) { stage_keys_values<F>(s, at, k, v, j0, T, buffer); };
  float query_lse[M][2], query_dot[M][2];  // log2-scaled; zeros past T (whose rows add nothing)
#pragma unroll
  for (int m = 0; m < M; ++m) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int query = queries.mine[m][r];
      const bool valid = query < T;
      query_lse[m][r] = valid ? lse[at.stat_offset + query] * kLog2e : 0.0f;
      query_dot[m][r] = valid ? row_dot[at.stat_offset + query] : 0.0f;
    }
  }

  stage_rows<F, kOwn>(s.q, at.rows(q), q0, T);
  stage_rows<F, kOwn>(s.dout, at.rows(dout), q0, T);
  stage(0, 0);
  HeadResults<F, M> dq;
#pragma unroll
  for (int m = 0; m < M; ++m) zero<F>(dq[m]);
  for_each_tile(0, queries.key_tiles_end(T), stage, [&](int j0, int buffer, bool) {
    if (queries.skips_tile(j0)) return;
    TileResults<M> ds, dprobs;
    const int warp_row = at.warp * M * kFrag * kHeadStride<F>;
    times_tile_transposed<F, M>(ds, SharedRows<F, M>{s.q + warp_row}, pick(s.k, buffer), lane);
    times_tile_transposed<F, M>(dprobs, SharedRows<F, M>{s.dout + warp_row}, pick(s.v, buffer),
                                lane);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (queries.masks_tile(j0)) mask_future_keys<true>(ds[m], queries.mine[m], j0, lane);
#pragma unroll
      for (int n = 0; n < kTileColumns; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float p = exp2_flushed(fmaf(ds[m][n][e], scale_log2, -query_lse[m][e / 2]));
          ds[m][n][e] = p * (dprobs[m][n][e] - query_dot[m][e / 2]);
        }
      }
    }
    accumulate_times_tile<F, M>(dq, ds, pick(s.k, buffer), lane);
  });
  const float factor[2] = {scale, scale};
  const BiasSlots<F, M, 1> slots{reinterpret_cast<float*>(dynamic_shared_memory())};
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float* sums = bias_partials != nullptr ? slots.slot(0, at.warp * M + m) : nullptr;
    put_rows<F, kGradientsAdd<Out>>(dqkv + at.qkv_offset, 3 * C, dq[m],
                                    queries.warp_first + m * kFrag, T, factor, lane, sums);
  }
  if (bias_partials != nullptr) {
    write_bias_partials(bias_partials, slots, {0}, q0, at.b, at.h, T, C);
  }
}

// dK and dV for the block's keys: dv_j = Σ_{i>=j} p_ij dout_i, dk_j = scale Σ_{i>=j} ds_ij q_i
// over the query tiles from the block's diagonal on. The warp's products are transposed (keys
// are its rows, queries the tile's). Grid (key blocks, NH, B), the block with the most query
// tiles (the first keys) first.
// Up to head size 64 the registers are capped for three blocks an SM (twelve warps, against eight
// with the registers the compiler would otherwise take), unless kHold: then two blocks an SM,
// whose warps hold their keys' and values' fragments in registers instead of reloading them for
// every tile (the same numbers bit for bit).
// dK and dV are added to an fp32 dqkv, written to a bf16 one (with their bias partials where
// bias_partials is not nullptr).
template <int F, bool kHold, typename Out>
__global__ void __launch_bounds__(kThreads, kHold    ? 2
                                            : F <= 4 ? 3
                                                     : 1)
    dkv_kernel(Out* dqkv, float* bias_partials, Operand dout, const float* lse,
               const float* row_dot, Operand q, Operand k, Operand v, int T, int C, int NH,
               float scale) {
  const Place at(T, C, NH, F * kFrag);
  Carver carver{dynamic_shared_memory()};
  const DkvShared<F> s(carver);
  const FragmentLane lane;
  const BlockRows<> keys(blockIdx.x * kRows, at.warp, lane);
  const int k0 = keys.first;
  const int(&key)[2] = keys.mine[0];
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
      QueryPairStats& pair = pick(s.stats, buffer)[threadIdx.x / 2];
      pair.lse[threadIdx.x % 2] = next_lse;
      pair.row_dot[threadIdx.x % 2] = next_dot;
    }
  };

  stage_rows<F>(s.k, at.rows(k), k0, T);
  stage_rows<F>(s.v, at.rows(v), k0, T);
  stage(k0, 0);
  store_stats(0);
  HeadResults<F, 1> dk, dv;
  zero<F>(dk[0]);
  zero<F>(dv[0]);
  const Bf16* warp_keys = s.k + at.warp * kFrag * kHeadStride<F>;
  const Bf16* warp_values = s.v + at.warp * kFrag * kHeadStride<F>;
  [[maybe_unused]] HeldRows<F, 1> held_keys, held_values;  // kHold
  for_each_tile(k0, T, stage, [&](int i0, int buffer, bool more) {
    TileResults<1> probs, dscores;  // transposed: [key][query]
    if constexpr (kHold) {
      if (i0 == k0) {  // the block's keys and values are in from the first tile on
        held_keys.load(warp_keys, lane);
        held_values.load(warp_values, lane);
      }
      times_tile_transposed<F, 1>(probs, held_keys, pick(s.q, buffer), lane);
      times_tile_transposed<F, 1>(dscores, held_values, pick(s.dout, buffer), lane);
    } else {
      times_tile_transposed<F, 1>(probs, SharedRows<F, 1>{warp_keys}, pick(s.q, buffer), lane);
      times_tile_transposed<F, 1>(dscores, SharedRows<F, 1>{warp_values}, pick(s.dout, buffer),
                                  lane);
    }
    TileResult &p = probs[0], &ds = dscores[0];
    if (i0 == k0) mask_future_keys<false>(p, key, i0, lane);
    const QueryPairStats* tile_stats = pick(s.stats, buffer);
#pragma unroll
    for (int n = 0; n < kTileColumns; ++n) {
      const QueryPairStats pair = tile_stats[n * 4 + lane.t];  // columns n·8 + 2t, + 1
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[n][e] = exp2_flushed(fmaf(p[n][e], scale_log2, -pair.lse[e % 2]));
        ds[n][e] = p[n][e] * (ds[n][e] - pair.row_dot[e % 2]);
      }
    }
    accumulate_times_tile<F, 1>(dv, probs, pick(s.dout, buffer), lane);
    accumulate_times_tile<F, 1>(dk, dscores, pick(s.q, buffer), lane);
    if (more) store_stats(1 - buffer);  // its last readers finished before this tile's sync
  });
  Out* dst = dqkv + at.qkv_offset;
  const float dk_factor[2] = {scale, scale}, dv_factor[2] = {1.0f, 1.0f};
  const BiasSlots<F, 1, 2> slots{reinterpret_cast<float*>(dynamic_shared_memory())};
  const bool sums = bias_partials != nullptr;
  put_rows<F, kGradientsAdd<Out>>(dst + C, 3 * C, dk[0], keys.warp_first, T, dk_factor, lane,
                                  sums ? slots.slot(0, at.warp) : nullptr);
  put_rows<F, kGradientsAdd<Out>>(dst + 2 * C, 3 * C, dv[0], keys.warp_first, T, dv_factor, lane,
                                  sums ? slots.slot(1, at.warp) : nullptr);
  if (sums) write_bias_partials(bias_partials, slots, {C, 2 * C}, k0, at.b, at.h, T, C);
}

}  // namespace ds::tensor::cuda::tc_attention
