#include "tensor/cuda/cuda_ops.h"

#include <cuda_profiler_api.h>
#include <fmt/format.h>

#include <cstdlib>

#include "tensor/cuda/adamw.h"
#include "tensor/cuda/bf16_attention_block.h"
#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/bf16_matmul.h"
#include "tensor/cuda/bf16_mlp.h"
#include "tensor/cuda/blas.h"
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/classifier.h"
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/device_buffer.h"
#include "tensor/cuda/flash_attention.h"
#include "tensor/cuda/kernels.h"
#include "tensor/cuda/llama_kernels.h"
#include "tensor/cuda/lt_matmul.h"
#include "tensor/cuda/op_profiler.h"
#include "tensor/cuda/tensor_core_attention.h"
#include "util/log.h"

namespace ds::tensor::cuda {

namespace {

int select(int device) {
  DS_CUDA_CALL(cudaSetDevice(device));
  return device;
}

// The shared memory a block may opt into on a GPU with bf16 tensor cores (compute capability
// 8.0 on); 0 on older ones, which the tensor-core attention cannot run on.
size_t tensor_core_shared_bytes(int device) {
  int major = 0, optin = 0;
  DS_CUDA_CALL(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  DS_CUDA_CALL(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return major >= 8 ? static_cast<size_t>(optin) : 0;
}

// Whether a run multiplies in bf16 on bf16 tensor cores: then the LM head, the MLP and the other
// matmuls keep bf16 copies of their operands (classifier.h, bf16_mlp.h, bf16_matmul.h).
bool bf16_on_tensor_cores(MatmulPrecision precision, size_t tensor_core_shared_bytes) {
  return precision == MatmulPrecision::kBf16 && tensor_core_shared_bytes > 0;
}

// DS_CUDA_PROFILE_FROM_STEP: the step (1 on) at which begin_step starts the profiler; 0 (never)
// when unset, and, warned about, when not a positive number.
int64_t profile_from_step() {
  const char* value = std::getenv("DS_CUDA_PROFILE_FROM_STEP");
  if (value == nullptr) return 0;
  char* end = nullptr;
  const long long step = std::strtoll(value, &end, 10);
  if (end != value && *end == '\0' && step > 0) return step;
  log::warn("DS_CUDA_PROFILE_FROM_STEP={} is not a step number (1 on): the profiler is not started",
            value);
  return 0;
}

}  // namespace

CudaOps::CudaOps(int device, MatmulPrecision precision, size_t flash_above_bytes)
    : device_(select(device)),
      stream_(std::make_unique<Stream>()),
      blas_(std::make_unique<Blas>(precision)),
      // fp32 runs keep GELU out of the epilogues (LtMatmul::Options::fuse_gelu).
      lt_(std::make_unique<LtMatmul>(
          LtMatmul::Options{.precision = precision,
                            .fuse_gelu = precision != MatmulPrecision::kFp32,
                            .time_algorithms = LtMatmul::timing_requested()})),
      precision_(precision),
      tensor_core_shared_bytes_(tensor_core_shared_bytes(device)),
      bf16_on_tensor_cores_(bf16_on_tensor_cores(precision, tensor_core_shared_bytes_)),
      classifier_(std::make_unique<Classifier>(*blas_, bf16_on_tensor_cores_)),
      bf16_mlp_(bf16_on_tensor_cores_ ? std::make_unique<Bf16Mlp>(*lt_, layernorm_partials_)
                                      : nullptr),
      bf16_matmul_(bf16_on_tensor_cores_ ? std::make_unique<Bf16Matmul>(*lt_) : nullptr),
      tc_attention_(std::make_unique<TensorCoreAttention>()),
      bf16_attention_block_(bf16_on_tensor_cores_ ? std::make_unique<Bf16AttentionBlock>(
                                                        *lt_, *tc_attention_, layernorm_partials_)
                                                  : nullptr),
      flash_above_bytes_(flash_above_bytes),
      profile_from_step_(profile_from_step()),
      buckets_(std::make_unique<TokenBuckets>()),
      profiler_(std::make_unique<OpProfiler>()),
      // sum_of_squares' result, then the partial sums of every sum_of_squares_into.
      sum_(sizeof(double) * (1 + kSumOfSquaresParts), MemoryCategory::kOther,
           Device::cuda(device)) {}

CudaOps::~CudaOps() = default;

bool CudaOps::lt_usable(std::initializer_list<const void*> pointers, int N, int IC, int OC,
                        WeightLayout layout) {
  // Views into the parameter buffer of a model with odd sizes may not be aligned as cuBLASLt
  // wants, and take cuBLAS instead, as does a shape for which it offers no algorithm.
  for (const void* p : pointers) {
    if (!LtMatmul::aligned(p)) return false;
  }
  return lt_->supports(N, IC, OC, layout, DType::kF32);
}

void CudaOps::begin_step() {
  ++steps_begun_;
  if (steps_begun_ == 2) profiler_->restart();
  if (steps_begun_ == profile_from_step_) DS_CUDA_CALL(cudaProfilerStart());
}

std::string CudaOps::kernel_report() const {
  const LtMatmul::Stats& lt = lt_->stats();
  std::string report = fmt::format(
      "matmuls: {} cuBLASLt GEMM shapes planned, {} with their algorithm timed ({} faster than "
      "the heuristic's first, by {:.3f} ms over a call of each); bias/GELU steps fused into the "
      "epilogue {} "
      "times, run as separate kernels {} times; {} matmuls on cuBLAS (unaligned operands or no "
      "cuBLASLt algorithm); attention forwards: {} tensor-core flash, {} fp32 flash, {} "
      "materialised; LM head logits in {}; MLP hidden activations in {}; attention sublayers' qkv "
      "and output in {}; other matmuls' operands {}; MLP input gradients handed on to the "
      "attention sublayer: {}",
      lt.plans, lt.timed, lt.faster_than_first, lt.ms_saved, lt.fused, lt.unfused, cublas_matmuls_,
      attention_calls_[static_cast<int>(AttentionKernels::kTensorCoreFlash)],
      attention_calls_[static_cast<int>(AttentionKernels::kFlash)],
      attention_calls_[static_cast<int>(AttentionKernels::kMaterialised)],
      classifier_->bf16_logits() ? "bf16" : "fp32",
      bf16_mlp_ != nullptr ? "bf16 (hidden widths that are multiples of 8)" : "fp32",
      bf16_attention_block_ != nullptr ? "bf16 (tensor-core attention's head sizes)" : "fp32",
      bf16_matmul_ != nullptr ? "rounded to bf16 copies" : "as stored", handed_received_);
  const std::string attention = tc_attention_->report();
  if (!attention.empty()) report += "\ntensor-core attention variants: " + attention;
  if (profiler_->enabled()) {
    report += '\n';
    report += profiler_->report();
  }
  return report;
}

cudaStream_t CudaOps::stream() const { return stream_->get(); }

std::string CudaOps::device_name() const {
  cudaDeviceProp properties{};
  DS_CUDA_CALL(cudaGetDeviceProperties(&properties, device_));
  return properties.name;
}

void CudaOps::upload(void* dst, const void* host, size_t bytes) {
  if (bytes == 0) return;
  {
    const auto timed = profiler_->time("upload", stream());
    DS_CUDA_CALL(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream()));
  }
  // From pageable memory the driver has copied `host` into its own staging when the call
  // returns, but from page-locked memory (Ops::allocate_staging, which the layer buffers and
  // the staged collectives refill at once) the copy reads it only when it runs: wait, so that
  // the caller may reuse `host` at once as the interface promises.
  DS_CUDA_CALL(cudaStreamSynchronize(stream()));
}

void CudaOps::download(void* host, const void* src, size_t bytes) {
  if (bytes != 0) {
    const auto timed = profiler_->time("download", stream());
    DS_CUDA_CALL(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream()));
  }
  DS_CUDA_CALL(cudaStreamSynchronize(stream()));
}

void CudaOps::copy(void* dst, const void* src, size_t bytes) {
  const auto timed = profiler_->time("copy", stream());
  if (bytes == 0 || dst == src) return;
  DS_CUDA_CALL(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void CudaOps::zero_bytes(void* dst, size_t bytes) {
  const auto timed = profiler_->time("zero_bytes", stream());
  if (bytes != 0) DS_CUDA_CALL(cudaMemsetAsync(dst, 0, bytes, stream()));
}

void CudaOps::sync() { stream_->synchronize(); }

void CudaOps::encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                              int B, int T, int C) {
  const auto timed = profiler_->time("encoder_forward", stream());
  cuda::encoder_forward(out, tokens, wte, wpe, B, T, C, stream());
}
void CudaOps::encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                               const int32_t* host_tokens, int B, int T, int C) {
  const auto timed = profiler_->time("encoder_backward", stream());
  const int64_t n = int64_t{B} * T;
  if (host_tokens != nullptr) {
    buckets_->build_from_host(host_tokens, n, stream());
  } else {
    buckets_->build(tokens, n, stream());
  }
  cuda::encoder_backward(dwte, dwpe, dout, B, T, C, *buckets_, stream());
}
void CudaOps::layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                const float* weight, const float* bias, int N, int C, float eps) {
  const auto timed = profiler_->time("layernorm_forward", stream());
  cuda::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps, stream());
}
void CudaOps::layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                 const float* inp, const float* weight, const float* mean,
                                 const float* rstd, int N, int C) {
  layernorm_backward_onto(dinp, dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}
void CudaOps::layernorm_backward_onto(float* dinp, const float* dresidual, float* dweight,
                                      float* dbias, const float* dout, const float* inp,
                                      const float* weight, const float* mean, const float* rstd,
                                      int N, int C) {
  // dresidual == dinp (layernorm_backward) accumulates: the kernel adds to what it reads.
  const auto timed = profiler_->time("layernorm_backward", stream());
  cuda::layernorm_backward(dinp, dresidual, dweight, dbias, dout, inp, weight, mean, rstd, N, C,
                           mixed::layernorm_partials(layernorm_partials_, C), stream());
}
void CudaOps::matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                             int N, int IC, int OC, WeightLayout layout) {
  // bf16 runs' matmuls on bf16 copies of their operands, where the output is aligned as cuBLASLt
  // wants (a view with odd offsets, such as an evaluation's [N, V] logits, would need staging as
  // large as itself).
  if (bf16_matmul_ != nullptr && LtMatmul::aligned(out) &&
      bf16_matmul_->supports(N, IC, OC, layout)) {
    const auto timed = profiler_->time("matmul_forward (bf16)", stream(), {N, IC, OC});
    return bf16_matmul_->forward(out, inp, weight, bias, N, IC, OC, layout, stream());
  }
  const auto timed = profiler_->time("matmul_forward", stream(), {N, IC, OC});
  if (lt_usable({out, inp, weight, bias}, N, IC, OC, layout)) {
    lt_->forward(out, inp, weight, bias, N, IC, OC, layout, DType::kF32, stream());
  } else {
    cuda::matmul_forward(*blas_, out, inp, weight, bias, N, IC, OC, layout, stream());
    ++cublas_matmuls_;
  }
}
void CudaOps::matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                              const float* inp, const float* weight, int N, int IC, int OC,
                              WeightLayout layout) {
  if (bf16_matmul_ != nullptr && LtMatmul::aligned(dinp) && LtMatmul::aligned(dweight) &&
      bf16_matmul_->supports(N, IC, OC, layout)) {
    const auto timed = profiler_->time("matmul_backward (bf16)", stream(), {N, IC, OC});
    return bf16_matmul_->backward(dinp, dweight, dbias, dout, inp, weight, N, IC, OC, layout,
                                  stream());
  }
  const auto timed = profiler_->time("matmul_backward", stream(), {N, IC, OC});
  if (lt_usable({dinp, dweight, dbias, dout, inp, weight}, N, IC, OC, layout)) {
    lt_->backward(dinp, dweight, dbias, dout, inp, weight, N, IC, OC, layout, DType::kF32,
                  stream());
  } else {
    cuda::matmul_backward(*blas_, dinp, dweight, dbias, dout, inp, weight, N, IC, OC, layout,
                          stream());
    ++cublas_matmuls_;
  }
}
void CudaOps::matmul_gelu_forward(float* out, float* pre_gelu, const float* inp,
                                  const float* weight, const float* bias, int N, int IC, int OC,
                                  WeightLayout layout) {
  const auto timed = profiler_->time("matmul_gelu_forward", stream(), {N, IC, OC});
  if (lt_usable({out, pre_gelu, inp, weight, bias}, N, IC, OC, layout)) {
    lt_->forward_gelu(out, pre_gelu, inp, weight, bias, N, IC, OC, layout, DType::kF32, stream());
  } else {
    Ops::matmul_gelu_forward(out, pre_gelu, inp, weight, bias, N, IC, OC, layout);
  }
}
void CudaOps::matmul_gelu_backward(float* dpre_gelu, float* dweight, float* dbias,
                                   const float* dout, const float* inp, const float* weight,
                                   const float* pre_gelu, int N, int IC, int OC,
                                   WeightLayout layout) {
  const auto timed = profiler_->time("matmul_gelu_backward", stream(), {N, IC, OC});
  if (lt_usable({dpre_gelu, dweight, dbias, dout, inp, weight, pre_gelu}, N, IC, OC, layout)) {
    lt_->backward_gelu(dpre_gelu, dweight, dbias, dout, inp, weight, pre_gelu, N, IC, OC, layout,
                       DType::kF32, stream());
  } else {
    Ops::matmul_gelu_backward(dpre_gelu, dweight, dbias, dout, inp, weight, pre_gelu, N, IC, OC,
                              layout);
  }
}
CudaOps::AttentionKernels CudaOps::attention_kernels(int B, int T, int C, int NH) const {
  if (precision_ == MatmulPrecision::kBf16 && tensor_core_attention_supports(C, NH) &&
      tensor_core_attention_shared_bytes(C, NH) <= tensor_core_shared_bytes_) {
    return AttentionKernels::kTensorCoreFlash;
  }
  const double probabilities = sizeof(float) * double(B) * NH * T * T;
  if (flash_attention_supports(C, NH) && probabilities > static_cast<double>(flash_above_bytes_)) {
    return AttentionKernels::kFlash;
  }
  return AttentionKernels::kMaterialised;
}
int64_t CudaOps::attention_saved_floats(int B, int T, int C, int NH) const {
  // Flash-style: each row's log-sum-exp, and in the backward each row's dout·out.
  if (attention_kernels(B, T, C, NH) != AttentionKernels::kMaterialised) {
    return int64_t{B} * NH * T;
  }
  return Ops::attention_saved_floats(B, T, C, NH);
}
void CudaOps::attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                                int NH) {
  const auto timed = profiler_->time("attention_forward", stream());
  const AttentionKernels kernels = attention_kernels(B, T, C, NH);
  ++attention_calls_[static_cast<int>(kernels)];
  switch (kernels) {
    case AttentionKernels::kTensorCoreFlash:
      return tc_attention_->forward(out, att, qkv, B, T, C, NH, stream());
    case AttentionKernels::kFlash:
      return flash_attention_forward(out, att, qkv, B, T, C, NH, stream());
    case AttentionKernels::kMaterialised:
      return cuda::attention_forward(*blas_, out, att, qkv, B, T, C, NH, stream());
  }
}
void CudaOps::attention_backward(float* dqkv, float* datt_scratch, const float* dout,
                                 const float* qkv, const float* att, const float* out, int B, int T,
                                 int C, int NH) {
  const auto timed = profiler_->time("attention_backward", stream());
  switch (attention_kernels(B, T, C, NH)) {
    case AttentionKernels::kTensorCoreFlash:
      return tc_attention_->backward(dqkv, datt_scratch, dout, qkv, out, att, B, T, C, NH,
                                     stream());
    case AttentionKernels::kFlash:
      return flash_attention_backward(dqkv, datt_scratch, dout, qkv, out, att, B, T, C, NH,
                                      stream());
    case AttentionKernels::kMaterialised:
      return cuda::attention_backward(*blas_, dqkv, datt_scratch, dout, qkv, att, B, T, C, NH,
                                      stream());
  }
}
void CudaOps::gelu_forward(float* out, const float* inp, int64_t N) {
  const auto timed = profiler_->time("gelu_forward", stream());
  cuda::gelu_forward(out, inp, N, stream());
}
void CudaOps::gelu_backward_inplace(float* d, const float* inp, int64_t N) {
  const auto timed = profiler_->time("gelu_backward_inplace", stream());
  mixed::gelu_backward_inplace(d, inp, N, DType::kF32, stream());
}
void CudaOps::fill_zero(float* x, int64_t N) {
  const auto timed = profiler_->time("fill_zero", stream());
  cuda::fill_zero(x, N, stream());
}
void CudaOps::residual_forward(float* out, const float* a, const float* b, int64_t N) {
  const auto timed = profiler_->time("residual_forward", stream());
  cuda::residual_forward(out, a, b, N, stream());
}
void CudaOps::add_inplace(float* dst, const float* src, int64_t N) {
  const auto timed = profiler_->time("add_inplace", stream());
  cuda::add_inplace(dst, src, N, stream());
}
void CudaOps::softmax_cross_entropy_forward(float* losses, float* probs, const float* logits,
                                            const int32_t* targets, int N, int V) {
  const auto timed = profiler_->time("softmax_cross_entropy_forward", stream());
  cuda::softmax_cross_entropy_forward(losses, probs, logits, targets, N, V, stream());
}
bool CudaOps::bf16_mlp_runs(int N, int C, int H) const {
  // supports() only looks up (or, once per shape, makes) cuBLASLt plans.
  return bf16_mlp_ != nullptr && bf16_mlp_->supports(N, C, H);
}
int64_t CudaOps::mlp_saved_floats(int N, int C, int H) const {
  return bf16_mlp_runs(N, C, H) ? Bf16Mlp::saved_floats(N, C, H) : Ops::mlp_saved_floats(N, C, H);
}
void CudaOps::mlp_forward(float* out, float* saved, const float* x, const SublayerWeights& w,
                          float eps, int N, int C, int H) {
  if (!bf16_mlp_runs(N, C, H)) {
    // The composed MLP: its ops are timed on their own.
    Ops::mlp_forward(out, saved, x, w, eps, N, C, H);
    return;
  }
  const auto timed = profiler_->time("mlp_forward (bf16)", stream(), {N, C, H});
  bf16_mlp_->forward(out, saved, x, w, eps, N, C, H, stream());
}
void CudaOps::mlp_backward(float* dx, const SublayerGrads& g, const SublayerScratch& t,
                           const float* dout, const float* saved, const float* x,
                           const SublayerWeights& w, int N, int C, int H) {
  if (t.dx_handed != nullptr) *t.dx_handed = {};
  if (!bf16_mlp_runs(N, C, H)) {
    Ops::mlp_backward(dx, g, t, dout, saved, x, w, N, C, H);
    return;
  }
  const auto timed = profiler_->time("mlp_backward (bf16)", stream(), {N, C, H});
  // dx's bf16 copy and column sums, for the attention sublayer's backward next (Ops::
  // HandedGradient): one set, overwritten by the next MLP backward.
  if (t.dx_handed != nullptr) {
    handed_copy_.grow(sizeof(__nv_bfloat16) * static_cast<size_t>(int64_t{N} * C));
    handed_sums_.grow(sizeof(float) * static_cast<size_t>(C));
  }
  const mixed::GradientHandOff hand_off = handed_gradient();
  const bool handed = bf16_mlp_->backward(dx, g, t, dout, saved, x, w, N, C, H,
                                          t.dx_handed != nullptr ? &hand_off : nullptr, stream());
  if (handed) *t.dx_handed = {dx, N, C, this, ++handed_serial_};
}
mixed::GradientHandOff CudaOps::handed_gradient() {
  return {handed_copy_.as<__nv_bfloat16>(), handed_sums_.as<float>()};
}
bool CudaOps::bf16_attention_block_runs(int B, int T, int C, int NH) const {
  // supports() only looks up (or, once per shape, makes) cuBLASLt plans.
  return bf16_attention_block_ != nullptr &&
         attention_kernels(B, T, C, NH) == AttentionKernels::kTensorCoreFlash &&
         bf16_attention_block_->supports(B * T, C);
}
int64_t CudaOps::attention_block_saved_floats(int B, int T, int C, int NH) const {
  if (bf16_attention_block_runs(B, T, C, NH)) {
    return Bf16AttentionBlock::saved_floats(B, T, C, NH);
  }
  return Ops::attention_block_saved_floats(B, T, C, NH);
}
void CudaOps::attention_block_forward(float* out, float* saved, const float* x,
                                      const SublayerWeights& w, float eps, int B, int T, int C,
                                      int NH) {
  if (!bf16_attention_block_runs(B, T, C, NH)) {
    // The composed sublayer: its ops are timed on their own.
    Ops::attention_block_forward(out, saved, x, w, eps, B, T, C, NH);
    return;
  }
  const auto timed = profiler_->time("attention_block_forward (bf16)", stream(), {B * T, C, NH});
  ++attention_calls_[static_cast<int>(AttentionKernels::kTensorCoreFlash)];
  bf16_attention_block_->forward(out, saved, x, w, eps, B, T, C, NH, stream());
}
void CudaOps::attention_block_backward(float* dx, const SublayerGrads& g, const SublayerScratch& t,
                                       const float* dout, const float* saved, const float* x,
                                       const SublayerWeights& w, int B, int T, int C, int NH) {
  if (!bf16_attention_block_runs(B, T, C, NH)) {
    Ops::attention_block_backward(dx, g, t, dout, saved, x, w, B, T, C, NH);
    return;
  }
  const auto timed = profiler_->time("attention_block_backward (bf16)", stream(), {B * T, C, NH});
  // What the MLP's backward handed on, if it was this object's latest and made with this dout.
  const HandedGradient* handed = t.dout_handed;
  const bool received = handed != nullptr && handed->maker == this &&
                        handed->serial == handed_serial_ && handed->dx == dout &&
                        handed->rows == B * T && handed->columns == C;
  if (received) ++handed_received_;
  const mixed::GradientHandOff hand_off = handed_gradient();
  bf16_attention_block_->backward(dx, g, t, dout, saved, x, w, B, T, C, NH,
                                  received ? &hand_off : nullptr, stream());
}
int64_t CudaOps::classifier_scratch_floats(int N, int V) const {
  return classifier_->scratch_floats(N, V);
}
void CudaOps::classifier_forward(float* losses, float* scratch, const float* inp, const float* head,
                                 const int32_t* targets, float dloss, int N, int C, int V) {
  const auto timed = profiler_->time("classifier_forward", stream(), {N, C, V});
  classifier_->forward(losses, scratch, inp, head, targets, dloss, N, C, V, stream());
}
void CudaOps::classifier_backward(float* dinp, float* dhead, const float* scratch, const float* inp,
                                  const float* head, int N, int C, int V) {
  const auto timed = profiler_->time("classifier_backward", stream(), {N, C, V});
  classifier_->backward(dinp, dhead, scratch, inp, head, N, C, V, stream());
}
void CudaOps::softmax_cross_entropy_fused(float* losses, float* dlogits, const float* logits,
                                          const int32_t* targets, float dloss, int N, int V) {
  const auto timed = profiler_->time("softmax_cross_entropy_fused", stream());
  cuda::softmax_cross_entropy_fused(losses, dlogits, logits, targets, dloss, N, V, stream());
}
void CudaOps::rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N,
                              int C, float eps) {
  const auto timed = profiler_->time("rmsnorm_forward", stream());
  cuda::rmsnorm_forward(out, rstd, inp, weight, N, C, eps, stream());
}
void CudaOps::rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                               const float* weight, const float* rstd, int N, int C) {
  const auto timed = profiler_->time("rmsnorm_backward", stream());
  cuda::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C, stream());
}
void CudaOps::rope_forward(float* x, const float* cos, const float* sin, int N, int T, int heads,
                           int hs, int64_t stride) {
  const auto timed = profiler_->time("rope_forward", stream());
  cuda::rope_forward(x, cos, sin, N, T, heads, hs, stride, stream());
}
void CudaOps::rope_backward(float* dx, const float* cos, const float* sin, int N, int T, int heads,
                            int hs, int64_t stride) {
  const auto timed = profiler_->time("rope_backward", stream());
  cuda::rope_backward(dx, cos, sin, N, T, heads, hs, stride, stream());
}
void CudaOps::swiglu_forward(float* out, const float* gate, const float* up, int64_t N) {
  const auto timed = profiler_->time("swiglu_forward", stream());
  cuda::swiglu_forward(out, gate, up, N, stream());
}
void CudaOps::swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                              const float* up, int64_t N) {
  const auto timed = profiler_->time("swiglu_backward", stream());
  cuda::swiglu_backward(dgate, dup, dout, gate, up, N, stream());
}
void CudaOps::expand_kv_heads(float* qkv, const float* q, const float* k, const float* v, int N,
                              int NH, int KVH, int hs) {
  const auto timed = profiler_->time("expand_kv_heads", stream());
  cuda::expand_kv_heads(qkv, q, k, v, N, NH, KVH, hs, stream());
}
void CudaOps::reduce_kv_heads(float* dq, float* dk, float* dv, const float* dqkv, int N, int NH,
                              int KVH, int hs) {
  const auto timed = profiler_->time("reduce_kv_heads", stream());
  cuda::reduce_kv_heads(dq, dk, dv, dqkv, N, NH, KVH, hs, stream());
}

void CudaOps::to_f32(float* out, const void* in, DType dtype, int64_t n) {
  const auto timed = profiler_->time("to_f32", stream());
  cuda::to_f32(out, in, dtype, n, stream());
}
void CudaOps::from_f32(void* out, DType dtype, const float* in, int64_t n) {
  const auto timed = profiler_->time("from_f32", stream());
  cuda::from_f32(out, dtype, in, n, stream());
}
void CudaOps::add_f32_into(void* out, DType dtype, const float* in, int64_t n) {
  const auto timed = profiler_->time("add_f32_into", stream());
  cuda::add_f32_into(out, dtype, in, n, stream());
}
void CudaOps::convert_scaled(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                             float scale) {
  const auto timed = profiler_->time("convert_scaled", stream());
  cuda::convert_scaled(out, out_dtype, in, in_dtype, n, scale, stream());
}
void CudaOps::add_scaled_into(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                              float scale) {
  const auto timed = profiler_->time("add_scaled_into", stream());
  cuda::add_scaled_into(out, out_dtype, in, in_dtype, n, scale, stream());
}

double CudaOps::sum_of_squares(const float* x, int64_t n) {
  const auto timed = profiler_->time("sum_of_squares", stream());
  double result = 0;
  if (n == 0) return result;
  sum_of_squares_into(sum_.as<double>(), x, DType::kF32, n);
  download(&result, sum_.data(), sizeof result);
  return result;
}
void CudaOps::sum_of_squares_into(double* result, const void* x, DType dtype, int64_t n) {
  const auto timed = profiler_->time("sum_of_squares_into", stream());
  if (n == 0) {
    zero_bytes(result, sizeof(double));
    return;
  }
  cuda::sum_of_squares(result, sum_.as<double>() + 1, x, dtype, n, stream());
}
void CudaOps::scale_inplace(float* x, float scale, int64_t n) {
  const auto timed = profiler_->time("scale_inplace", stream());
  cuda::scale_inplace(x, scale, n, stream());
}
void CudaOps::adam_step(float* params, const StepIo& io, float* exp_avg, float* exp_avg_sq,
                        int64_t n, double lr, int64_t step, const AdamOptions& o) {
  const auto timed = profiler_->time("adam_step", stream());
  cuda::adam_step(params, io, exp_avg, exp_avg_sq, n, lr, step, o, stream());
}
void CudaOps::sgd_step(float* params, const StepIo& io, float* momentum_buffer, int64_t n,
                       double lr, int64_t step, const SgdOptions& options) {
  const auto timed = profiler_->time("sgd_step", stream());
  cuda::sgd_step(params, io, momentum_buffer, n, lr, step, options, stream());
}

}  // namespace ds::tensor::cuda
