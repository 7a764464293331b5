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

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "tensor/cuda/device_buffer.h"
#include "tensor/variant_choice.h"

namespace ds::tensor::cuda {

class CudnnAttention;

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
  // from the fp32 results). The backward also adds the column sums of the dqkv it writes into
  // dbias (fp32 [3C], any alignment; nullptr: not), the qkv bias gradient, from partial sums its
  // kernels keep beside dqkv (a fixed order: the same sums on every run and in every variant).
  void forward(Bf16* out, float* lse, const Bf16* qkv, int B, int T, int C, int NH,
               cudaStream_t stream);
  void backward(Bf16* dqkv, float* dbias, float* row_dot, const Bf16* dout, const Bf16* qkv,
                const Bf16* out, const float* lse, int B, int T, int C, int NH,
                cudaStream_t stream);

  // Three kernels come in two variants that give the same numbers bit for bit (the kernels'
  // header), up to head size 64, where the GPU has the shared memory: the forward and dQ in 64-
  // or 128-row blocks (variant 1), and dK/dV with its keys' and values' fragments reloaded for
  // every tile or held in registers (1). Which is faster depends on the GPU and the size, so the
  // first call at each size times both on its own operands and keeps the faster for the run. A
  // kernel that adds into an fp32 dqkv cannot run twice, so it is not timed and takes variant 0.
  //
  // Tests and benchmarks: every such kernel in `variant` (0 or 1) instead of the faster; -1 goes
  // back to choosing.
  void set_variant(int variant);

  // While choosing (no set_variant), the bf16 entry points run cuDNN's fused attention
  // (cudnn_attention.h) instead, in builds with cuDNN's headers, where CudnnAttention::wanted(),
  // in each direction cuDNN has an engine for at the shape; the backward's dbias then comes from
  // a fixed-order column sum of the dqkv cuDNN writes. Whether either direction runs on cuDNN
  // here, for the log and the tests.
  bool uses_cudnn(int B, int T, int C, int NH);

  TensorCoreAttention();
  ~TensorCoreAttention();
  TensorCoreAttention(const TensorCoreAttention&) = delete;
  TensorCoreAttention& operator=(const TensorCoreAttention&) = delete;

  // The choices and the times that made them, for the run's log ("" before any).
  std::string report() const;

 private:
  // Whether the head size has the variants and the GPU gives a block their shared memory (72 KiB
  // for dQ's 128-row blocks at head size 64; variant 0 needs tensor_core_attention_shared_bytes).
  bool has_variants(int C, int NH);
  // The variant of `choice` for this call: set_variant's, else the chosen one where `repeatable`
  // (the kernel writes its results), else 0.
  int variant(VariantChoice& choice, bool repeatable, bool bf16, int B, int T, int C, int NH,
              const std::function<void(int)>& run, cudaStream_t stream);
  template <typename Out>
  void run_forward(Out* out, float* lse, const Bf16* qkv, int B, int T, int C, int NH,
                   cudaStream_t stream);
  template <typename Out>
  void run_backward(Out* dqkv, float* dbias, const float* row_dot, const Bf16* dout,
                    const Bf16* qkv, const float* lse, int B, int T, int C, int NH,
                    cudaStream_t stream);

  // cuDNN's attention while choosing, made on the first bf16 call where wanted; nullptr
  // otherwise (builds with cuDNN's headers).
  CudnnAttention* cudnn();

  std::unique_ptr<CudnnAttention> cudnn_;  // made on the first bf16 call where wanted
  bool cudnn_asked_ = false;
  std::string cudnn_why_;  // why cuDNN is, or is not, in use
  DeviceBuffer operands_;
  DeviceBuffer bias_partials_;  // [B · ⌈T/64⌉][3C] floats, for the bf16 backward's dbias
  // Sizes: B, T rounded up to 128 rows, C, NH and whether the results are bf16.
  static constexpr VariantChoice::SizeNames kSizeNames{"B=", " T<=", " C=", " NH=", " bf16="};
  VariantChoice forward_{"forward", {"64-row blocks", "128-row blocks"}, kSizeNames};
  VariantChoice dq_{"dQ", {"64-row blocks", "128-row blocks"}, kSizeNames};
  VariantChoice dkv_{"dK/dV", {"fragments reloaded", "fragments held"}, kSizeNames};
  int set_variant_ = -1;
  int shared_limit_ = -1;  // the GPU's shared memory per block (opt-in), read on first use
};

}  // namespace ds::tensor::cuda
