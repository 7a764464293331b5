// The launch-free building blocks of the kernels here: block shapes and grid sizes, the block's
// dynamic shared memory, warp- and block-wide reductions, and the fixed-order column sum kernel.
// Nothing in it needs more than CUDA's device language, so kernel headers built on it also compile
// against the CPU emulation the tests use (test/emulated_cuda/, which defines DS_EMULATED_CUDA and
// its own dynamic_shared_memory()).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace ds::tensor::cuda::detail {

constexpr int kWarp = 32;
constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / kWarp;  // row kernels: one warp per row

// Calls fn(std::integral_constant<int, n>{}) where 1 <= n <= kMax (nothing otherwise): a run-time
// count as a template argument, for kernels that hold that many values in registers.
template <int kMax, int kN = 1, typename Fn>
void with_constant(int n, Fn&& fn) {
  if constexpr (kN <= kMax) {
    if (n == kN) return fn(std::integral_constant<int, kN>{});
    with_constant<kMax, kN + 1>(n, fn);
  }
}

// Blocks of `per_block` for n threads (or rows): a launch's grid size.
inline unsigned blocks_for(int64_t n, int per_block = kBlock) {
  return static_cast<unsigned>((n + per_block - 1) / per_block);
}

// This thread's element of a thread-per-element launch, and its row of a warp-per-row one.
__device__ inline int64_t element() { return int64_t{blockIdx.x} * blockDim.x + threadIdx.x; }
__device__ inline int warp_row() {
  return static_cast<int>(blockIdx.x) * kRowsPerBlock + static_cast<int>(threadIdx.x) / kWarp;
}

#ifndef DS_EMULATED_CUDA
// The block's dynamic shared memory (the launch's third argument), 128-byte aligned.
__device__ inline unsigned char* dynamic_shared_memory() {
  extern __shared__ __align__(128) unsigned char memory[];
  return memory;
}
#endif

// 2^x by the special-function unit alone, results below FLT_MIN flushed to zero (ex2.approx.ftz):
// one instruction, where exp2f, which keeps subnormal results, takes four (a range test, and
// scalings before and after). For softmax weights, which are summed and rounded to bf16, whose
// range is fp32's, the subnormals carry nothing. exp2(-inf) is 0 either way.
#ifdef DS_EMULATED_CUDA
inline float exp2_flushed(float x) {
  const float y = std::exp2(x);
  return y < std::numeric_limits<float>::min() ? 0.0f : y;
}
#else
__device__ __forceinline__ float exp2_flushed(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
#endif

// Butterfly reductions: every lane ends with the same value, combined in the same order on
// every run.
template <typename T>
__device__ inline T warp_sum(T x) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
// The same over aligned groups of `group` lanes (a power of two, at most 32): lanes
// [g·group, (g+1)·group) each end with their group's sum. The whole warp must call it.
__device__ inline float group_sum(float x, int group) {
  for (int offset = group / 2; offset > 0; offset /= 2)
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ inline float warp_max(float x) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  }
  return x;
}

// Reduces over a whole block (blockDim.x a multiple of 32, at most 1024); every thread gets
// the result. `shared` holds 32 values; the block synchronises, so all threads must call it.
template <typename T, typename Op>
__device__ inline T block_reduce(T x, T* shared, Op op) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    x = op(x, __shfl_xor_sync(0xffffffffu, x, offset));
  }
  __syncthreads();  // `shared` may still be read from a previous call
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  T total = shared[0];
  for (int w = 1; w < warps; ++w) total = op(total, shared[w]);
  return total;
}

struct Add {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// How column_sum adds a column's total into dst: in place for fp32; a 16-bit storage type
// specialises it (storage_types.cuh) to add in fp32 and round once.
template <typename T>
struct ColumnAdd {
  __device__ static void add(T* dst, int c, float total) { dst[c] += total; }
};

// dst[c] += sum over n of term(n, c), for c in [0, C). A block owns 8 columns (one 32-byte
// memory sector of each row, so a warp's 4 rows x 8 columns read whole sectors) and 128 rows of
// threads, which take rows n = y, y + 128, ...; the 128 partial sums are added in y order, so
// every column is summed in the same order on every run, with no atomics. Narrow tiles give
// GPT-2's C = 768 columns 96 blocks rather than 24, to keep most SMs reading.
constexpr int kColumnWidth = 8;
constexpr int kColumnRows = 128;
template <typename T, typename Term>
__global__ void __launch_bounds__(kColumnWidth* kColumnRows)
    column_sum_kernel(T* dst, int N, int C, Term term) {
  __shared__ float partial[kColumnRows][kColumnWidth + 1];
  const int c = blockIdx.x * kColumnWidth + threadIdx.x;
  float sum = 0.0f;
  if (c < C) {
    // Unrolled so that several rows' loads are in flight at once; the adds stay in row order.
#pragma unroll 8
    for (int n = threadIdx.y; n < N; n += kColumnRows) sum += term(n, c);
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float total = 0.0f;
    for (int y = 0; y < kColumnRows; ++y) total += partial[y][threadIdx.x];
    ColumnAdd<T>::add(dst, c, total);
  }
}

}  // namespace ds::tensor::cuda::detail
