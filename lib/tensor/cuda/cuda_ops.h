// tensor::Ops on one CUDA device: every op is queued on the object's compute stream (the
// kernels of cuda/kernels.h and cuda/llama_kernels.h; the matmuls on cuBLASLt with their bias,
// bias-gradient and, in mixed precision, GELU steps fused into the GEMMs' epilogues; attention
// on the tensor cores in bf16 runs, else materialised on cuBLAS or flash-style), so ops run in call
// order and the host only waits in download() and sync(). A collective backend that works on the
// same buffers orders itself after this stream with events.
#pragma once

#include <cuda_runtime_api.h>

#include <initializer_list>
#include <memory>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/device_buffer.h"
#include "tensor/ops.h"

namespace ds::tensor::cuda {

class Bf16AttentionBlock;
class Bf16Matmul;
class Bf16Mlp;
class Blas;
class Classifier;
class LtMatmul;
class OpProfiler;
class Stream;
class TensorCoreAttention;
class TokenBuckets;

class CudaOps final : public Ops {
 public:
  // Where fp32 and fp16 runs switch attention to the fp32 flash-style kernels by default: 1 GiB
  // of probabilities per layer and micro-batch (GPT-2 at B = 16, T = 1024 keeps its
  // materialised 805 MB, on cuBLAS's TF32 or fp32 GEMMs; B = 4, T = 4096 with 32 heads would need
  // 8 GiB). Those kernels run on the CUDA cores and trade the memory for recomputation. bf16
  // runs take the tensor-core flash kernels (tensor_core_attention.h) at every size their head
  // size and the GPU allow (compute capability 8.0 on, shared memory per block enough): they round
  // what the materialised path's bf16 GEMMs round, and never write the T x T scores.
  static constexpr size_t kFlashAboveBytes = size_t{1} << 30;

  // Makes `device` current for the calling thread and creates the stream and handle on it,
  // the matmuls (attention's too) at `precision` (blas.h).
  // Attention outside bf16 whose materialised probabilities would take more than
  // `flash_above_bytes` per layer runs flash-style instead (flash_attention.h; 0: always).
  explicit CudaOps(int device, MatmulPrecision precision = MatmulPrecision::kFp32,
                   size_t flash_above_bytes = kFlashAboveBytes);
  ~CudaOps() override;

  Device device() const override { return Device::cuda(device_); }
  std::string device_name() const override;
  std::string kernel_report() const override;
  // With DS_CUDA_PROFILE_FROM_STEP=k, starts the CUDA profiler (cudaProfilerStart) as this
  // process's k-th step begins, for Nsight's --profile-from-start off: the steps from k on,
  // without the first's planning and timing. The op profile (DS_GPU_OP_PROFILE=1) counts from
  // the second step on.
  void begin_step() override;
  cudaStream_t stream() const;
  Buffer allocate_staging(size_t bytes, MemoryCategory category) const override {
    return Buffer::pinned(bytes, category);
  }

  void upload(void* dst, const void* host, size_t bytes) override;
  void download(void* host, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void zero_bytes(void* dst, size_t bytes) override;
  void sync() override;

  void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                       int T, int C) override;
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        const int32_t* host_tokens, int B, int T, int C) override;
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C, float eps) override;
  void layernorm_backward_onto(float* dinp, const float* dresidual, float* dweight, float* dbias,
                               const float* dout, const float* inp, const float* weight,
                               const float* mean, const float* rstd, int N, int C) override;
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override;
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                      int IC, int OC, WeightLayout layout) override;
  void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int N, int IC, int OC,
                       WeightLayout layout) override;
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                         int NH) override;
  int64_t attention_saved_floats(int B, int T, int C, int NH) const override;
  void attention_backward(float* dqkv, float* datt_scratch, const float* dout, const float* qkv,
                          const float* att, const float* out, int B, int T, int C, int NH) override;
  void gelu_forward(float* out, const float* inp, int64_t N) override;
  void gelu_backward_inplace(float* d, const float* inp, int64_t N) override;
  void matmul_gelu_forward(float* out, float* pre_gelu, const float* inp, const float* weight,
                           const float* bias, int N, int IC, int OC, WeightLayout layout) override;
  void matmul_gelu_backward(float* dpre_gelu, float* dweight, float* dbias, const float* dout,
                            const float* inp, const float* weight, const float* pre_gelu, int N,
                            int IC, int OC, WeightLayout layout) override;
  void fill_zero(float* x, int64_t N) override;
  void residual_forward(float* out, const float* a, const float* b, int64_t N) override;
  void add_inplace(float* dst, const float* src, int64_t N) override;
  void softmax_cross_entropy_forward(float* losses, float* probs, const float* logits,
                                     const int32_t* targets, int N, int V) override;
  void softmax_cross_entropy_fused(float* losses, float* dlogits, const float* logits,
                                   const int32_t* targets, float dloss, int N, int V) override;
  int64_t mlp_saved_floats(int N, int C, int H) const override;
  void mlp_forward(float* out, float* saved, const float* x, const SublayerWeights& w, float eps,
                   int N, int C, int H) override;
  void mlp_backward(float* dx, const SublayerGrads& g, const SublayerScratch& t, const float* dout,
                    const float* saved, const float* x, const SublayerWeights& w, int N, int C,
                    int H) override;
  int64_t attention_block_saved_floats(int B, int T, int C, int NH) const override;
  void attention_block_forward(float* out, float* saved, const float* x, const SublayerWeights& w,
                               float eps, int B, int T, int C, int NH) override;
  void attention_block_backward(float* dx, const SublayerGrads& g, const SublayerScratch& t,
                                const float* dout, const float* saved, const float* x,
                                const SublayerWeights& w, int B, int T, int C, int NH) override;
  int64_t classifier_scratch_floats(int N, int V) const override;
  void classifier_forward(float* losses, float* scratch, const float* inp, const float* head,
                          const int32_t* targets, float dloss, int N, int C, int V) override;
  void classifier_backward(float* dinp, float* dhead, const float* scratch, const float* inp,
                           const float* head, int N, int C, int V) override;
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                       float eps) override;
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                        const float* weight, const float* rstd, int N, int C) override;
  void rope_forward(float* x, const float* cos, const float* sin, int N, int T, int heads, int hs,
                    int64_t stride) override;
  void rope_backward(float* dx, const float* cos, const float* sin, int N, int T, int heads, int hs,
                     int64_t stride) override;
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) override;
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                       const float* up, int64_t N) override;
  void expand_kv_heads(float* qkv, const float* q, const float* k, const float* v, int N, int NH,
                       int KVH, int hs) override;
  void reduce_kv_heads(float* dq, float* dk, float* dv, const float* dqkv, int N, int NH, int KVH,
                       int hs) override;
  void to_f32(float* out, const void* in, DType dtype, int64_t n) override;
  void from_f32(void* out, DType dtype, const float* in, int64_t n) override;
  void add_f32_into(void* out, DType dtype, const float* in, int64_t n) override;
  void convert_scaled(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                      float scale) override;
  void add_scaled_into(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                       float scale) override;
  double sum_of_squares(const float* x, int64_t n) override;
  void sum_of_squares_into(double* result, const void* x, DType dtype, int64_t n) override;
  void scale_inplace(float* x, float scale, int64_t n) override;
  void adam_step(float* params, const StepIo& io, float* exp_avg, float* exp_avg_sq, int64_t n,
                 double lr, int64_t step, const AdamOptions& options) override;
  void sgd_step(float* params, const StepIo& io, float* momentum_buffer, int64_t n, double lr,
                int64_t step, const SgdOptions& options) override;

 private:
  // Whether LtMatmul can run an N x IC x OC matmul on these operands: every non-null pointer
  // 16-byte aligned, and an algorithm for each GEMM of the shape.
  bool lt_usable(std::initializer_list<const void*> pointers, int N, int IC, int OC,
                 WeightLayout layout);
  // Which kernels attention at this shape runs (the forward and its backward agree).
  enum class AttentionKernels { kMaterialised, kFlash, kTensorCoreFlash };
  AttentionKernels attention_kernels(int B, int T, int C, int NH) const;
  // Whether the MLP at this shape runs as Bf16Mlp (else composed from the ops; the forward, its
  // backward and the saved size agree).
  bool bf16_mlp_runs(int N, int C, int H) const;
  // Whether the attention sublayer at this shape runs as Bf16AttentionBlock (else composed from
  // the ops; the forward, its backward and the saved size agree).
  bool bf16_attention_block_runs(int B, int T, int C, int NH) const;
  // The buffers of the MLP backward's hand-off (handed_copy_, handed_sums_ below).
  mixed::GradientHandOff handed_gradient();

  int device_;
  std::unique_ptr<Stream> stream_;
  // Attention's batched GEMMs, and the matmuls LtMatmul cannot run.
  std::unique_ptr<Blas> blas_;
  // The matmuls, with their bias, bias-gradient and (in mixed precision) GELU steps in the
  // epilogues.
  std::unique_ptr<LtMatmul> lt_;
  MatmulPrecision precision_;
  size_t tensor_core_shared_bytes_;  // per block, for the tensor-core attention (0: no bf16 MMA)
  bool bf16_on_tensor_cores_;        // the run's products in bf16 on them: the bf16 ops below exist
  // Every layernorm backward's column sums per block, and the bf16 sublayers' bias sums per
  // 128-row chunk: grown to the largest need, in the first step (and where N grows).
  DeviceBuffer layernorm_partials_;
  std::unique_ptr<Classifier> classifier_;   // the training step's LM head (classifier.h)
  std::unique_ptr<Bf16Mlp> bf16_mlp_;        // bf16 runs' MLP (bf16_mlp.h); null otherwise
  std::unique_ptr<Bf16Matmul> bf16_matmul_;  // bf16 runs' other matmuls; null otherwise
  // bf16 runs' attention and its workspace (tensor_core_attention.h)
  std::unique_ptr<TensorCoreAttention> tc_attention_;
  // bf16 runs' attention sublayer (bf16_attention_block.h); null otherwise
  std::unique_ptr<Bf16AttentionBlock> bf16_attention_block_;
  // The MLP backward's dx handed on to the attention sublayer's (Ops::HandedGradient): its bf16
  // copy [N, C] and column sums [C], grown once to the largest N; the serial of the latest
  // hand-off, and how many the attention sublayer took (for kernel_report()).
  DeviceBuffer handed_copy_, handed_sums_;
  uint64_t handed_serial_ = 0;
  int64_t handed_received_ = 0;
  size_t flash_above_bytes_;
  int64_t profile_from_step_ = 0;          // DS_CUDA_PROFILE_FROM_STEP; 0: never
  int64_t steps_begun_ = 0;                // begin_step calls
  int64_t attention_calls_[3] = {};        // forwards per AttentionKernels, for kernel_report()
  int64_t cublas_matmuls_ = 0;             // matmul calls (forward or backward) run on cuBLAS
  std::unique_ptr<TokenBuckets> buckets_;  // the embedding backward's grouping of positions
  std::unique_ptr<OpProfiler> profiler_;   // GPU time per op, with DS_GPU_OP_PROFILE=1
  Buffer sum_;  // sum_of_squares' result, then kSumOfSquaresParts partial sums (kernels.h)
};

}  // namespace ds::tensor::cuda
