// Flash-style causal attention (flash_attention.h's contracts) with its products on the tensor
// cores, for bf16 runs: each block holds 64 rows of one side (queries, or keys in the dK/dV
// kernel; the forward and dQ also in 128-row blocks, below) and walks the other side in 64-row
// tiles, and its warps multiply 16-row slices with
// mma.sync's 16x8x16 bf16 products, accumulating in fp32, the scores and accumulators in registers
// (FlashAttention-2's scheme, Dao 2023). Q, K, V, dout, and the probabilities and their gradients
// are rounded to bf16 on their way into a product, as the materialised path's bf16 GEMMs round
// them (blas.h); the softmax, its statistics and every sum stay in fp32. The T x T scores never
// reach memory: per layer, attention reads and writes O(T) per row instead of O(T²).
//
// Deterministic like the rest of the CUDA ops: the backward's dQ and dK/dV come from two kernels
// that each own their rows (the scores are recomputed in both), so no atomics.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "tensor/cuda/device_buffer.h"

namespace ds::tensor::cuda {

// Head sizes the kernels take: multiples of the fragment's 16, up to 128. The GPU must also
// have bf16 tensor cores (compute capability 8.0 on) and, per block, the shared memory below:
// up to 103 KiB at head size 128 (55 KiB at 64), more than consumer Ampere and Ada cards offer
// (99 KiB).
bool tensor_core_attention_supports(int C, int NH);
size_t tensor_core_attention_shared_bytes(int C, int NH);

// The kernels read bf16 operands in place: a bf16 qkv [B,T,3C] and dout [B,T,C] (16-byte
// aligned). The fp32 entry points (the Ops contracts, for any caller) first round qkv and dout into
// such copies, in a workspace owned here that grows to the largest shape once (B·T·4C bf16 for a
// backward), so after the first step nothing is allocated; the bf16 ones (the bf16 attention
// block's, bf16_attention_block.h) read their operands where they are. One per stream; not
// thread-safe.
class TensorCoreAttention {
 public:
  using Bf16 = __nv_bfloat16;

  // out = softmax(scale Q Kᵀ, causal) V per head; lse[b,h,t] = log Σ_j exp(score_tj). Layouts as
  // flash_attention_forward's: qkv [B,T,3C], out [B,T,C], lse [B,NH,T].
  void forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
               cudaStream_t stream);
  // dqkv += the gradient of out (dout) with respect to qkv; `row_dot` [B,NH,T] is scratch.
  void backward(float* dqkv, float* row_dot, const float* dout, const float* qkv, const float* out,
                const float* lse, int B, int T, int C, int NH, cudaStream_t stream);

  // The same on bf16 tensors, every one 16-byte aligned; out and dqkv are WRITTEN (rounded once
  // from the fp32 results).
  void forward(Bf16* out, float* lse, const Bf16* qkv, int B, int T, int C, int NH,
               cudaStream_t stream);
  void backward(Bf16* dqkv, float* row_dot, const Bf16* dout, const Bf16* qkv, const Bf16* out,
                const float* lse, int B, int T, int C, int NH, cudaStream_t stream);

  // Tests and benchmarks: every forward and dQ in blocks of `rows` query rows (64, or 128 where
  // the head size and the GPU allow it) instead of the faster shape; 0 goes back to choosing.
  void set_block_rows(int rows);

  // The block shapes of the forward and of dQ at each size they ran, and the times that chose
  // them, for the run's log ("" before any choice).
  std::string report() const;

 private:
  // The forward and dQ kernels come in two block shapes, 64 and 128 query rows (the kernels'
  // header), which give the same numbers bit for bit; which one is faster depends on the GPU and
  // the size. So the first call at each size (up to head size 64: the 128-row blocks' registers)
  // times both on its own operands and keeps the faster for the run. dQ is timed only where it
  // writes its results (bf16 dqkv): an fp32 dqkv accumulates, so it cannot run twice, and keeps
  // 64-row blocks.
  struct BlockChoice {
    int rows = 64;
    float ms[2] = {0, 0};  // one run each, 64 and 128 rows, the fastest of a few
  };
  using BlockChoices = std::map<std::array<int, 4>, BlockChoice>;  // by (B, T, C, NH)

  // Whether this head size has 128-row blocks and the GPU gives a block their shared memory
  // (72 KiB at head size 64; the 64-row kernels need tensor_core_attention_shared_bytes).
  bool wide_blocks(int C, int NH);

  // The rows for `size` from `choices`, timing run(64) and run(128) the first time.
  template <typename Run>
  int block_rows(BlockChoices& choices, const std::array<int, 4>& size, Run&& run,
                 cudaStream_t stream);
  template <typename Out>
  void run_forward(Out* out, float* lse, const Bf16* qkv, int B, int T, int C, int NH,
                   cudaStream_t stream);
  template <typename Out>
  void run_backward(Out* dqkv, const float* row_dot, const Bf16* dout, const Bf16* qkv,
                    const float* lse, int B, int T, int C, int NH, cudaStream_t stream);

  DeviceBuffer operands_;
  BlockChoices forward_rows_, dq_rows_;
  int set_rows_ = 0;       // set_block_rows
  int shared_limit_ = -1;  // the GPU's shared memory per block (opt-in), read on first use
};

}  // namespace ds::tensor::cuda
