// The GPT kernels of tensor/cpu/kernels.h on the GPU, apart from their launches (bf16_kernels.cu)
// so that the tests can also build them against the CPU emulation of CUDA (test/emulated_cuda/).
// Element-wise ops take a thread per element; row ops (normalisations, softmax) a warp per row, or
// a block per row where rows are long (cross-entropy over the vocabulary); parameter gradients
// reduce through detail::column_sum_kernel.
//
// The model's kernels are templates over the storage type S of their tensors (float,
// __nv_bfloat16, __half): every value is widened to fp32 on load, all arithmetic and every
// reduction is fp32 (the cross-entropy's row sum combined in double), and each result is
// rounded to S once when stored (storage_types.cuh). So an instance at S gives exactly the fp32
// instance's result on the widened inputs, rounded to S, and at S = float it is the fp32 kernel.
// The statistics (layernorm's mean and rstd, the losses) and the embedding's gradients are fp32
// whatever S is. The kernels that only fp32 runs use are fp32_op_kernels.cuh's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/cpu/kernels.h"
#include "tensor/cuda/device_primitives.cuh"
#include "tensor/cuda/storage_types.cuh"

namespace ds::tensor::cuda::op_kernels {

using namespace detail;
using cpu::kIgnoreTarget;

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;
constexpr int kCrossEntropyBlock = 512;

__device__ inline float gelu_tanh(float x) {
  return tanhf(kGeluScale * (x + kGeluCubic * x * x * x));
}

__device__ inline float gelu(float x) { return 0.5f * x * (1.0f + gelu_tanh(x)); }

__device__ inline float gelu_grad(float x) {
  const float th = gelu_tanh(x);
  const float du = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

template <typename S>
__global__ void encoder_forward_kernel(S* out, const int32_t* tokens, const S* wte, const S* wpe,
                                       int64_t BT, int T, int C) {
  const int64_t i = element();
  if (i >= BT * C) return;
  const int64_t bt = i / C;
  const int c = static_cast<int>(i % C);
  const int t = static_cast<int>(bt % T);
  const float position = wpe != nullptr ? load(wpe, int64_t{t} * C + c) : 0.0f;
  store(out, i, load(wte, int64_t{tokens[bt]} * C + c) + position);
}

// A thread per (distinct token, channel): that token's positions in ascending order, as the
// CPU's loop meets them, so the sum is bitwise the CPU's.
template <typename S>
__global__ void wte_backward_kernel(float* dwte, const S* dout, const int32_t* tokens,
                                    const int32_t* offsets, const int32_t* positions, int C) {
  const int u = blockIdx.x;
  const int c = static_cast<int>(blockIdx.y * blockDim.x + threadIdx.x);
  if (c >= C) return;
  float* row = dwte + int64_t{tokens[u]} * C;
  float sum = row[c];
  for (int i = offsets[u]; i < offsets[u + 1]; ++i)
    sum += load(dout, int64_t{positions[i]} * C + c);
  row[c] = sum;
}

// A thread per (position t, channel): the batch rows b = 0, 1, ... in order.
template <typename S>
__global__ void wpe_backward_kernel(float* dwpe, const S* dout, int B, int T, int C) {
  const int64_t i = element();
  if (i >= int64_t{T} * C) return;
  float sum = dwpe[i];
  for (int b = 0; b < B; ++b) sum += load(dout, int64_t{b} * T * C + i);
  dwpe[i] = sum;
}

// mean and rstd (nullable) are those of the stored input. The output may be stored in another
// type (Out: fp32 inputs normalised into bf16, where only a bf16 GEMM reads the output).
template <typename S, typename Out = S>
__global__ void layernorm_forward_kernel(Out* out, float* mean, float* rstd, const S* inp,
                                         const S* weight, const S* bias, int N, int C, float eps) {
  const int n = warp_row();
  if (n >= N) return;
  const int lane = threadIdx.x % kWarp;
  const S* x = inp + int64_t{n} * C;
  Out* o = out + int64_t{n} * C;
  float sum = 0.0f;
  // Unrolled: a lane's loads of several columns in flight at once (the sums keep their order).
#pragma unroll 4
  for (int c = lane; c < C; c += kWarp) sum += load(x, c);
  const float m = warp_sum(sum) / C;
  // Two passes, as the CPU: the variance from squared deviations.
  float sq = 0.0f;
#pragma unroll 4
  for (int c = lane; c < C; c += kWarp) {
    const float dev = load(x, c) - m;
    sq += dev * dev;
  }
  const float s = 1.0f / sqrtf(warp_sum(sq) / C + eps);
#pragma unroll 4
  for (int c = lane; c < C; c += kWarp) {
    store(o, c, (load(x, c) - m) * s * load(weight, c) + load(bias, c));
  }
  if (lane == 0) {
    if (mean != nullptr) mean[n] = m;
    if (rstd != nullptr) rstd[n] = s;
  }
}

// Layernorm's backward in one pass over dout and inp. Block b owns rows [b·rows, (b+1)·rows),
// its warps a row each in turn; a warp writes dinp = dresidual + the row's input gradient
// (dresidual == dinp: accumulates; else a residual connection's gradient joins in the same pass)
// and adds the row's terms of the parameter gradients (dout·x̂ for the weight, dout for the bias)
// to partial sums of its own, a pair per column in shared memory (layernorm_backward_shared_bytes;
// lane l owns columns l, l + 32, ...). The block then adds its warps' sums in warp order into its
// row of `partials` (weight sums [blocks][C], then bias sums [blocks][C]), whose column sums
// (column_sum_kernel over RowsTerm<float>) finish the gradients: every sum has a fixed order, with
// no atomics. dout may be stored in another type (G: a bf16 gradient from a bf16 GEMM).
constexpr int kLayernormBlocks = 512;  // at most; the partials' rows
inline size_t layernorm_backward_shared_bytes(int warps, int C) {
  return sizeof(float) * 2 * static_cast<size_t>(warps) * static_cast<size_t>(C);
}
// The kernel's launch for N rows of C with `warps` warps a block: `rows` a block (a whole number
// per warp) for at most max_blocks (<= kLayernormBlocks) blocks.
struct LayernormBackwardLaunch {
  int warps, rows, blocks;
  size_t shared_bytes;
  LayernormBackwardLaunch(int N, int C, int warps_per_block, int max_blocks = kLayernormBlocks)
      : warps(warps_per_block),
        rows(static_cast<int>(blocks_for(blocks_for(N, max_blocks), warps)) * warps),
        blocks(static_cast<int>(blocks_for(N, rows))),
        shared_bytes(layernorm_backward_shared_bytes(warps, C)) {}
};
template <typename S, typename G = S>
__global__ void layernorm_backward_kernel(S* dinp, const S* dresidual, float* partials,
                                          const G* dout, const S* inp, const S* weight,
                                          const float* mean, const float* rstd, int N, int C,
                                          int rows) {
  const int warps = static_cast<int>(blockDim.x) / kWarp;
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  float* weight_sums = reinterpret_cast<float*>(dynamic_shared_memory()) + 2 * warp * C;
  float* bias_sums = weight_sums + C;
  for (int c = lane; c < C; c += kWarp) {
    weight_sums[c] = 0.0f;
    bias_sums[c] = 0.0f;
  }
  const int first = static_cast<int>(blockIdx.x) * rows;
  const int end = min(N, first + rows);
  for (int n = first + warp; n < end; n += warps) {
    const S* x = inp + int64_t{n} * C;
    const G* d = dout + int64_t{n} * C;
    S* di = dinp + int64_t{n} * C;
    const S* dr = dresidual + int64_t{n} * C;
    const float m = mean[n];
    const float s = rstd[n];
    float dnorm = 0.0f;
    float dnorm_norm = 0.0f;
    // Unrolled: a lane's loads of several columns in flight at once (the sums keep their order).
#pragma unroll 4
    for (int c = lane; c < C; c += kWarp) {
      const float wd = load(weight, c) * load(d, c);
      dnorm += wd;
      dnorm_norm += wd * (load(x, c) - m) * s;
    }
    const float dnorm_mean = warp_sum(dnorm) / C;
    const float dnorm_norm_mean = warp_sum(dnorm_norm) / C;
#pragma unroll 4
    for (int c = lane; c < C; c += kWarp) {
      const float norm = (load(x, c) - m) * s;
      const float dc = load(d, c);
      const float grad = (load(weight, c) * dc - dnorm_mean - norm * dnorm_norm_mean) * s;
      store(di, c, load(dr, c) + grad);
      weight_sums[c] += dc * norm;
      bias_sums[c] += dc;
    }
  }
  __syncthreads();
  const float* sums = reinterpret_cast<const float*>(dynamic_shared_memory());
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float weight_total = 0.0f, bias_total = 0.0f;
    for (int w = 0; w < warps; ++w) {
      weight_total += sums[2 * w * C + c];
      bias_total += sums[(2 * w + 1) * C + c];
    }
    partials[int64_t{blockIdx.x} * C + c] = weight_total;
    partials[(int64_t{gridDim.x} + blockIdx.x) * C + c] = bias_total;
  }
}

template <typename S>
struct RowsTerm {  // the matrix itself: column sums of x
  const S* x;
  int C;
  __device__ float operator()(int n, int c) const { return load(x, int64_t{n} * C + c); }
};

// A bias gradient's column sums of dout [N, C] in two fixed-order passes, for rows that start
// 16-byte aligned with C a multiple of 8: this kernel's blocks each own kBiasChunkRows rows and
// 256 columns, each thread 8 neighbouring columns (16-byte loads: a warp reads 512 contiguous
// bytes of a bf16 row, 1 KiB of an fp32 one) of every kBiasLanes-th row, and write their
// columns' sums over the chunk into partials [chunks][C]; column_sum_kernel over RowsTerm<float>
// then adds the chunks' sums in chunk order. column_sum_kernel alone reads a column's rows down
// one block, 8 columns wide (half a sector of a bf16 row), with fewer blocks than SMs at C = 768.
// An fp32 dout can also be written rounded to bf16 on the way (`rounded`, [N, C], 16-byte
// aligned; nullptr: not), the copy a bf16 GEMM reads, in the same pass.
constexpr int kBiasChunkRows = 128;
constexpr int kBiasGroups = 32;  // 8-column groups a block: 256 columns
constexpr int kBiasLanes = 8;    // threads down the rows
inline int bias_chunks(int N) { return (N + kBiasChunkRows - 1) / kBiasChunkRows; }

template <typename S>
__global__ void __launch_bounds__(kBiasGroups* kBiasLanes)
    bias_partials_kernel(float* partials, const S* dout, int N, int C, __nv_bfloat16* rounded) {
  constexpr int kLoads = 8 / Chunk<S>::kCount;  // 16-byte chunks in 8 columns
  __shared__ float lanes[kBiasLanes][8][kBiasGroups];
  const int c0 = (blockIdx.x * kBiasGroups + threadIdx.x) * 8;
  const int first = blockIdx.y * kBiasChunkRows;
  const int end = first + kBiasChunkRows < N ? first + kBiasChunkRows : N;
  float sum[8] = {};
  if (c0 < C) {
#pragma unroll 4
    for (int n = first + threadIdx.y; n < end; n += kBiasLanes) {
      const auto* row = reinterpret_cast<const Chunk<S>*>(dout + int64_t{n} * C + c0);
      float values[8];
#pragma unroll
      for (int l = 0; l < kLoads; ++l) {
        const Chunk<S> chunk = row[l];
#pragma unroll
        for (int k = 0; k < Chunk<S>::kCount; ++k)
          values[l * Chunk<S>::kCount + k] = load(chunk.x, k);
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) sum[j] += values[j];
      if (rounded != nullptr) {
        Chunk<__nv_bfloat16> out;
#pragma unroll
        for (int j = 0; j < 8; ++j) store(out.x, j, values[j]);
        *reinterpret_cast<Chunk<__nv_bfloat16>*>(rounded + int64_t{n} * C + c0) = out;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) lanes[threadIdx.y][j][threadIdx.x] = sum[j];
  __syncthreads();
  if (threadIdx.y != 0 || c0 >= C) return;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    float total = 0.0f;
    for (int y = 0; y < kBiasLanes; ++y) total += lanes[y][j][threadIdx.x];
    partials[int64_t{blockIdx.y} * C + c0 + j] = total;
  }
}

template <typename S>
__global__ void broadcast_rows_kernel(S* out, const S* row, int64_t N, int C) {
  const int64_t i = element();
  if (i < N * C) out[i] = row[i % C];
}

template <typename S>
__global__ void gelu_forward_kernel(S* out, const S* inp, int64_t N) {
  const int64_t i = element();
  if (i < N) store(out, i, gelu(load(inp, i)));
}

template <typename S>
__global__ void gelu_backward_kernel(S* dinp, const S* inp, const S* dout, int64_t N) {
  const int64_t i = element();
  if (i < N) store(dinp, i, load(dinp, i) + gelu_grad(load(inp, i)) * load(dout, i));
}

// d = gelu'(inp) * d: WRITES (the GELU after a GEMM that wrote d).
template <typename S>
__global__ void gelu_backward_inplace_kernel(S* d, const S* inp, int64_t N) {
  const int64_t i = element();
  if (i < N) store(d, i, gelu_grad(load(inp, i)) * load(d, i));
}

template <typename S>
__global__ void residual_forward_kernel(S* out, const S* a, const S* b, int64_t N) {
  const int64_t i = element();
  if (i < N) store(out, i, load(a, i) + load(b, i));
}

template <typename S>
__global__ void add_inplace_kernel(S* dst, const S* src, int64_t N) {
  const int64_t i = element();
  if (i < N) store(dst, i, load(dst, i) + load(src, i));
}

// A row's elements in 16-byte chunks (storage_types.cuh) when the row starts 16-byte aligned, as
// the classifier's padded rows do: fn(first, values, count) gets each chunk's values widened to
// fp32 (count of them; 1 for the elements past the last whole chunk, or everywhere in an
// unaligned row). Chunk c goes to thread c % blockDim.x, the same thread on every call. Where
// `copy` is not nullptr (shared memory of V elements, 16-byte aligned) each chunk is also stored
// there as it is read, at its place in the row: a later walk of the copy (visit_row's, or
// rewrite_row's where dst is aligned too) gives every thread the chunks it stored, so it needs no
// barrier (the cross-entropy's block reductions synchronise anyway).
// A thread's chunks are read kVisitBatch at a time, all loads issued before the first is used, so
// that several are in flight however fn's work depends on the one before.
constexpr int kVisitBatch = 4;
template <typename S, typename Fn>
__device__ void visit_row(const S* row, int V, Fn&& fn, S* copy = nullptr) {
  constexpr int kCount = Chunk<S>::kCount;
  const int chunks = chunked(row) ? V / kCount : 0;
  const int stride = static_cast<int>(blockDim.x);
  for (int first = threadIdx.x; first < chunks; first += kVisitBatch * stride) {
    Chunk<S> batch[kVisitBatch];
#pragma unroll
    for (int b = 0; b < kVisitBatch; ++b) {
      const int c = first + b * stride;
      if (c < chunks) batch[b] = reinterpret_cast<const Chunk<S>*>(row)[c];
    }
#pragma unroll
    for (int b = 0; b < kVisitBatch; ++b) {
      const int c = first + b * stride;
      if (c >= chunks) break;
      if (copy != nullptr) reinterpret_cast<Chunk<S>*>(copy)[c] = batch[b];
      float values[kCount];
#pragma unroll
      for (int k = 0; k < kCount; ++k) values[k] = load(batch[b].x, k);
      fn(c * kCount, values, kCount);
    }
  }
  for (int i = chunks * kCount + threadIdx.x; i < V; i += blockDim.x) {
    const S value = row[i];
    if (copy != nullptr) copy[i] = value;
    float values[kCount] = {load(&value, 0)};
    fn(i, values, 1);
  }
}
// The same walk writing: dst's elements become fn(i, src's element i), chunk by chunk.
template <typename S, typename Fn>
__device__ void rewrite_row(S* dst, const S* src, int V, Fn&& fn) {
  constexpr int kCount = Chunk<S>::kCount;
  const int chunks = chunked(src) && chunked(dst) ? V / kCount : 0;
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
    const Chunk<S> in = reinterpret_cast<const Chunk<S>*>(src)[c];
    Chunk<S> out;
#pragma unroll
    for (int k = 0; k < kCount; ++k) store(out.x, k, fn(c * kCount + k, load(in.x, k)));
    reinterpret_cast<Chunk<S>*>(dst)[c] = out;
  }
  for (int i = chunks * kCount + threadIdx.x; i < V; i += blockDim.x) {
    store(dst, i, fn(i, load(src, i)));
  }
}

// A row's softmax statistics: its maximum, and the sum of exp(x − maximum) over it. One pass:
// each thread keeps a running maximum over its chunks and rescales its fp32 sum when it grows;
// the threads' sums, rescaled to the row's maximum, are combined in double. The whole block calls
// it (it synchronises). Both cross-entropy kernels go through it, so on the same rows (the same
// row length, alignment and block size, as the Ops tests give them) the fused training kernel
// and the separate forward give the same bits. -inf logits (a masked class) add nothing. `copy`:
// visit_row's.
struct RowStatistics {
  float max;
  double sum;
};
template <typename S>
__device__ RowStatistics row_statistics(const S* row, int V, float* shared_max, double* shared_sum,
                                        S* copy = nullptr) {
  float thread_max = -INFINITY, thread_sum = 0.0f;
  const auto add_chunk = [&](int, const float* values, int count) {
    float chunk_max = values[0];
    for (int k = 1; k < count; ++k) chunk_max = fmaxf(chunk_max, values[k]);
    if (chunk_max == -INFINITY) return;  // exp(-inf - anything) is 0; -inf - -inf is not
    if (chunk_max > thread_max) {
      thread_sum *= expf(thread_max - chunk_max);  // 0 before the first chunk
      thread_max = chunk_max;
    }
    for (int k = 0; k < count; ++k) thread_sum += expf(values[k] - thread_max);
  };
  visit_row(row, V, add_chunk, copy);
  const float row_max = block_reduce(thread_max, shared_max, Max{});
  // A thread that saw no element has thread_sum 0 (and thread_max -inf).
  const double mine = thread_sum == 0.0f ? 0.0 : double(thread_sum) * expf(thread_max - row_max);
  return {row_max, block_reduce(mine, shared_sum, Add{})};
}

// The dynamic shared memory of a row of V elements of S staged by softmax_cross_entropy_kernel.
template <typename S>
inline size_t cross_entropy_staged_bytes(int V) {
  return (sizeof(S) * static_cast<size_t>(V) + 15) / 16 * 16;
}

// Softmax cross-entropy's forward and backward for one row per block, rows `ld` elements apart
// (ld >= V: the GPU's classifier pads them for aligned GEMMs). Two passes over the row's logits:
// row_statistics, then the gradient written over dlogits (unless it is nullptr). Every element is
// read and then written by the same thread, and the target's logit is read before the first block
// synchronisation, so dlogits may alias logits.
//
// `staged` (for rows that start 16-byte aligned, with cross_entropy_staged_bytes(V) of dynamic
// shared memory): the first pass also copies the row into shared memory as it reads it, and the
// second reads it there, so the logits cross DRAM once; without, the second pass finds them in L2
// only while the rows in flight fit it (50304 bf16 logits a row: 100 KB). Each thread copies the
// chunks it visits, the same ones either way, so staging changes no bit of the result.
template <typename S>
__global__ void softmax_cross_entropy_kernel(float* losses, S* dlogits, const S* logits,
                                             const int32_t* targets, float dloss, int V, int64_t ld,
                                             bool staged) {
  __shared__ float shared_max[kWarp];
  __shared__ double shared_sum[kWarp];
  const int64_t n = blockIdx.x;
  const S* x = logits + n * ld;
  const int32_t target = targets[n];
  const bool ignored = target == kIgnoreTarget;
  const float target_logit = ignored ? 0.0f : load(x, target);
  S* copy = staged ? reinterpret_cast<S*>(dynamic_shared_memory()) : nullptr;
  const RowStatistics row = row_statistics(x, V, shared_max, shared_sum, copy);
  if (staged) x = copy;
  const float maxv = row.max;
  const double sum = row.sum;
  if (threadIdx.x == 0) {
    losses[n] = ignored ? 0.0f : static_cast<float>(log(sum) + double(maxv) - double(target_logit));
  }
  if (dlogits == nullptr) return;
  S* d = dlogits + n * ld;
  if (ignored) {
    rewrite_row(d, x, V, [](int, float) { return 0.0f; });
    return;
  }
  const float inv = static_cast<float>(1.0 / sum);
  rewrite_row(d, x, V, [&](int i, float logit) {
    // Rounded as the CPU: p = e * inv, then p * dloss, then the one-hot subtracted.
    const float p = __fmul_rn(expf(logit - maxv), inv);
    const float g = __fmul_rn(p, dloss);
    return i == target ? g - dloss : g;
  });
}

}  // namespace ds::tensor::cuda::op_kernels
