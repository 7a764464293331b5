// The training matmuls on cuBLASLt, for weights and activations stored as f32, bf16 or f16
// (accumulation always fp32: CUBLAS_COMPUTE_32F, or for f32 storage the input rounding that
// Options::precision allows, CUBLAS_COMPUTE_32F_FAST_TF32 or _FAST_16BF), with the row-major
// semantics and both WeightLayouts of cuda::matmul_forward/backward (kernels.h), and the bias, GELU
// and bias-gradient steps fused into the GEMM's epilogue where cuBLASLt has a kernel for it:
//   forward        out = inp·W + bias                               CUBLASLT_EPILOGUE_BIAS
//   forward_gelu   pre_gelu = inp·W + bias, out = GELU(pre_gelu)    ..._GELU_AUX(_BIAS)
//   backward       dweight += inp-and-dout GEMM, dbias += colsum    ..._BGRADA, ..._BGRADB
//   backward_gelu  dpre_gelu = gelu'(pre_gelu) ⊙ (dout·Wᵀ)          ..._DGELU
// Where it has none (a shape outside an epilogue's rules, below, or Options::fuse_epilogues
// off), the same result comes from a plain GEMM and a separate kernel of bf16_kernels.h.
//
// GELU is the tanh approximation throughout, as GPT-2 and tensor/cpu. cublasLt.h does not say
// which GELU its epilogues compute; llm.c fuses GELU_AUX_BIAS in place of its own tanh GELU
// kernel, and "cuda lt matmul GELU epilogue is the tanh approximation" in
// test/cuda_lt_matmul_test.cpp checks it on the device.
//
// Contracts, as kernels.h: nothing is allocated per call; every gradient ACCUMULATES (+=)
// except input_gradient's dinp and backward_gelu's dpre_gelu, which are WRITTEN (cuBLASLt
// applies an epilogue to alpha·AB + beta·C as a whole, so DGELU's gelu' would scale what is
// already there too; the buffer is a fresh activation gradient in a training step). The
// bias-gradient epilogues also write rather than add: the fused path writes dbias's sum into a
// scratch vector owned here and adds it to dbias with a small kernel, so dbias too is +=. The
// dweight GEMM adds with beta = 1.
//
// Rules for the arguments (checked; a violation throws ds::Error saying which):
// - every pointer 16-byte aligned (cuBLASLt's vector loads; a cudaMalloc'd buffer is 256-byte
//   aligned, so a view into one must start at a multiple of 8 bf16/f16 or 4 f32 elements);
// - N, IC, OC positive (N = 0 does nothing); odd sizes are fine for the plain GEMMs.
// Rules for the fused epilogues (not errors: outside them the unfused path runs):
// - GELU_AUX_BIAS needs OC % 8 == 0, DGELU IC % 8 == 0 (the pre-GELU matrix's leading
//   dimension must be a multiple of 8, cublasLt.h on CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD);
// - the others where cuBLASLt's heuristic returns an algorithm for the shape.
//
// Determinism: split-K reductions are limited to CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE (fp32
// partial sums reduced in a separate step; never INPLACE, which adds partials in the output
// type), and one algorithm is chosen per shape and kept, so repeated calls give the same bits
// for the same toolkit, GPU architecture and SM count (an H100 PCIe and an SXM, or MIG slices,
// may differ), workspace size and operand alignment, on one stream, as cuBLAS promises. With
// Options::time_algorithms the choice is by time, so two processes may choose differently and
// differ in the last bits; without it, they choose alike.
//
// Each distinct GEMM (operand and output dtypes, epilogue, transposes, m, n, k) gets a plan on its
// first call: the descriptors and the algorithm, kept for the life of the object. The algorithm is
// the heuristic's first, or with Options::time_algorithms the fastest of its first few, timed on
// the first call's own operands (a GEMM that adds to its output is timed into a scratch output,
// allocated for the timing and freed, so the output is added to once). After a training step has
// run once, later steps query nothing and allocate nothing (stats() counts both). One LtMatmul per
// stream: the workspace is shared by the calls it queues. Not thread-safe.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "tensor/cpu/kernels.h"
#include "tensor/cuda/device_buffer.h"
#include "tensor/dtype.h"
#include "tensor/matmul_precision.h"

namespace ds::tensor::cuda {

class LtMatmul {
 public:
  struct Options {
    // f32 storage only: how far the GEMMs may round their inputs (tensor/matmul_precision.h).
    MatmulPrecision precision = MatmulPrecision::kFp32;
    bool fuse_epilogues = true;  // false: bias, GELU and bias gradients as separate kernels
    // false: GELU and its derivative as separate kernels even where an epilogue could fuse
    // them (cuBLASLt's may use the hardware tanh, about 2^-11 relative: fine next to TF32 or
    // bf16 inputs, noticeable in an fp32 run).
    bool fuse_gelu = true;
    size_t workspace_bytes = size_t{32} << 20;  // NVIDIA's recommendation for Hopper
    // Time the heuristic's first kAlgorithmCandidates algorithms at each GEMM's first call and
    // keep the fastest where it beats the first by 3 % (the heuristic's guess was slower for 7 of
    // GPT-2's 12 timed shapes at B = 64 on an H100).
    bool time_algorithms = false;
  };
  static constexpr int kAlgorithmCandidates = 8;
  struct Stats {
    int64_t device_allocations = 0;  // cudaMalloc calls made by this object
    int64_t plans = 0;               // heuristic queries: one per distinct GEMM
    int64_t fused = 0;               // calls whose epilogue did their bias/GELU/dbias steps
    int64_t unfused = 0;  // bias/GELU/dbias steps run as separate kernels (a call may run two)
    int64_t timed = 0;    // plans whose algorithm was chosen by time (Options::time_algorithms)
    int64_t faster_than_first = 0;  // of those, where it is not the heuristic's first
    double ms_saved = 0;            // the fastest's time under the first's, summed over those plans
  };

  // The storage of a call's tensors: the GEMMs' operands (inp, weight, dout; the GEMM inputs
  // of a backward), what the call writes as products (out with its bias, pre_gelu, dinp,
  // dpre_gelu), and the weight gradients (dweight, dbias). One DType stands for all three; mixed,
  // 16-bit operands can give fp32 products and gradients (cuBLASLt's bf16 × bf16 → fp32 GEMMs),
  // as the bf16 MLP does (bf16_mlp.h).
  struct Storage {
    DType operands;
    DType outputs;
    DType weight_grads;
    Storage(DType all)  // NOLINT(google-explicit-constructor): a DType is the common case
        : operands(all), outputs(all), weight_grads(all) {}
    Storage(DType operands_dtype, DType outputs_dtype, DType weight_grads_dtype)
        : operands(operands_dtype), outputs(outputs_dtype), weight_grads(weight_grads_dtype) {}
  };

  LtMatmul();  // on the current device; allocates the workspace
  explicit LtMatmul(Options options);
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  // out[N,OC] = inp[N,IC] · W (+ bias[OC] when not nullptr).
  void forward(void* out, const void* inp, const void* weight, const void* bias, int N, int IC,
               int OC, cpu::WeightLayout layout, Storage storage, cudaStream_t stream);
  // out = residual + inp · W (+ bias): a residual connection added through the GEMM's C matrix
  // (beta = 1), so that it costs no pass of its own. residual (same shape and dtype as out) must
  // not overlap out; nullptr gives forward.
  void forward_residual(void* out, const void* residual, const void* inp, const void* weight,
                        const void* bias, int N, int IC, int OC, cpu::WeightLayout layout,
                        Storage storage, cudaStream_t stream);
  // pre_gelu[N,OC] = inp · W (+ bias), kept for the backward; out = GELU(pre_gelu).
  void forward_gelu(void* out, void* pre_gelu, const void* inp, const void* weight,
                    const void* bias, int N, int IC, int OC, cpu::WeightLayout layout,
                    Storage storage, cudaStream_t stream);

  // dinp (nullable) += dout · W^T; dweight (nullable) += the gradient in W's layout; dbias
  // (nullable) += column sums of dout.
  void backward(void* dinp, void* dweight, void* dbias, const void* dout, const void* inp,
                const void* weight, int N, int IC, int OC, cpu::WeightLayout layout,
                Storage storage, cudaStream_t stream);
  // dinp[N,IC] = dout · W^T, WRITTEN: a fresh activation gradient, such as the bf16 attention
  // block's, that nothing else adds to.
  void input_gradient(void* dinp, const void* dout, const void* weight, int N, int IC, int OC,
                      cpu::WeightLayout layout, Storage storage, cudaStream_t stream);
  // The backward of a layer whose input is GELU(pre_gelu) (GPT-2's c_proj after c_fc): the input
  // gradient goes through the GELU, dpre_gelu[N,IC] = gelu'(pre_gelu) ⊙ (dout · W^T) — WRITTEN;
  // dweight and dbias as in backward (inp is GELU(pre_gelu), the forward's out).
  void backward_gelu(void* dpre_gelu, void* dweight, void* dbias, const void* dout, const void* inp,
                     const void* weight, const void* pre_gelu, int N, int IC, int OC,
                     cpu::WeightLayout layout, Storage storage, cudaStream_t stream);

  // Whether cuBLASLt has plain GEMMs for every product forward, backward and their GELU forms
  // take at this shape (each of which otherwise throws). cuBLASLt's heuristic is asked once per
  // shape; later calls look its plans up.
  bool supports(int N, int IC, int OC, cpu::WeightLayout layout, Storage storage);

  // Options::time_algorithms as the environment asks: on unless DS_GEMM_TUNING=0 (the
  // heuristic's first algorithm, the same in every process, for runs that must repeat bit for
  // bit across processes); any other value than 0 or 1 is warned about.
  static bool timing_requested();
  // Whether `pointer` (nullptr included) is aligned as every operand must be.
  static bool aligned(const void* pointer);
  const Stats& stats() const { return stats_; }

 private:
  // One column-major cuBLASLt GEMM, D[m,n] = op(A)[m,k] op(B)[k,n], packed operands (ld = rows).
  struct GemmKey {
    DType dtype;        // A and B
    DType out;          // C and D, and the bias or bias gradient of an epilogue
    uint32_t epilogue;  // cublasLtEpilogue_t
    bool trans_a;
    bool trans_b;
    int m;
    int n;
    int k;
    bool operator<(const GemmKey& other) const {
      return std::tie(dtype, out, epilogue, trans_a, trans_b, m, n, k) <
             std::tie(other.dtype, other.out, other.epilogue, other.trans_a, other.trans_b, other.m,
                      other.n, other.k);
    }
  };
  struct Plan;

  Plan& plan(const GemmKey& key);
  // D = op(A) op(B) + beta C with the key's epilogue on `bias` and `aux` (C: D itself, or a
  // matrix laid out as D); false (having queued nothing) when cuBLASLt has no algorithm for it.
  bool try_gemm(const GemmKey& key, const void* a, const void* b, const void* c, void* d,
                float beta, const void* bias, const void* aux, cudaStream_t stream);
  // Makes the fastest of p's candidates its algorithm, timed as try_gemm's call (its bias and aux
  // pointers set): with beta != 0 and C == D, into a scratch D. Keeps the first where there is no
  // memory for the scratch.
  void choose_algorithm(Plan& p, const GemmKey& key, const void* a, const void* b, const void* c,
                        void* d, float beta, cudaStream_t stream);
  // As try_gemm without an epilogue (C is D unless given), throwing when there is no algorithm.
  void gemm(const GemmKey& key, const void* a, const void* b, void* d, float beta,
            cudaStream_t stream, const void* c = nullptr);
  // dinp = dout · W^T + beta dinp.
  void input_gemm(void* dinp, const void* dout, const void* weight, int N, int IC, int OC,
                  cpu::WeightLayout layout, Storage storage, float beta, cudaStream_t stream);
  void weight_gradients(void* dweight, void* dbias, const void* dout, const void* inp, int N,
                        int IC, int OC, cpu::WeightLayout layout, Storage storage,
                        cudaStream_t stream);
  void* bias_scratch(size_t bytes);
  cublasComputeType_t compute_type(DType dtype) const;

  Options options_;
  Stats stats_;
  cublasLtHandle_t handle_ = nullptr;
  cublasLtMatmulPreference_t preference_ = nullptr;
  DeviceBuffer workspace_;
  DeviceBuffer bias_scratch_;  // the fused bias gradient, before it is added to dbias
  std::map<GemmKey, std::unique_ptr<Plan>> plans_;
};

// bf16 runs' products on the GPU: bf16 operands, fp32 weight gradients, and bf16 or fp32 products
// (the bf16 sublayers' and matmuls', bf16_mlp.h, bf16_attention_block.h and bf16_matmul.h).
inline const LtMatmul::Storage kBf16Products{DType::kBF16, DType::kBF16, DType::kF32};
inline const LtMatmul::Storage kFp32Products{DType::kBF16, DType::kF32, DType::kF32};

}  // namespace ds::tensor::cuda
