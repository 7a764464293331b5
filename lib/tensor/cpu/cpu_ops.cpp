// tensor::Ops on the CPU: each op is the kernel of the same name in cpu/kernels.h or
// cpu/llama_kernels.h, which run to completion before they return (so sync() has nothing
// to wait for, and host and "device" memory are the same). And make_ops, the one place that
// knows every implementation.
#include <cstring>
#include <initializer_list>

#include "tensor/cpu/cast.h"
#include "tensor/cpu/kernels.h"
#include "tensor/cpu/llama_kernels.h"
#include "tensor/cpu/optimizer_kernels.h"
#include "tensor/ops.h"
#include "util/error.h"

#if defined(DS_WITH_CUDA)
#include "tensor/cuda/cuda_ops.h"
#endif

namespace ds::tensor {
namespace {

class CpuOps final : public Ops {
 public:
  // Device::cpu(), or Device::emulated() (host memory treated as a device's, for tests).
  explicit CpuOps(Device device) : device_(device) {}

  // On the emulated device every pointer an op gets must be in that device's memory: a host
  // pointer there is what would fault on a GPU, so tests find it without one.
  void guard(const char* op, std::initializer_list<const void*> pointers) const {
    if (device_.type != DeviceType::kEmulated) return;
    for (const void* p : pointers) {
      if (p != nullptr && !in_emulated_device_memory(p)) {
        throw Error(
            fmt::format("{} on the emulated device was given {}, which is not device "
                        "memory (on a GPU this would fault)",
                        op, p));
      }
    }
  }

  Device device() const override { return device_; }
  std::string device_name() const override { return ""; }

  void upload(void* dst, const void* host, size_t bytes) override {
    guard("upload", {dst});
    if (dst != host) std::memcpy(dst, host, bytes);
  }
  void download(void* host, const void* src, size_t bytes) override {
    guard("download", {src});
    if (host != src) std::memcpy(host, src, bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    guard("copy", {dst, src});
    if (dst != src) std::memcpy(dst, src, bytes);
  }
  void zero_bytes(void* dst, size_t bytes) override {
    guard("zero_bytes", {dst});
    std::memset(dst, 0, bytes);
  }
  void sync() override {}

  void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                       int T, int C) override {
    guard("encoder_forward", {out, tokens, wte, wpe});
    cpu::encoder_forward(out, tokens, wte, wpe, B, T, C);
  }
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        const int32_t* /*host_tokens: tokens is host memory here*/, int B, int T,
                        int C) override {
    guard("encoder_backward", {dwte, dwpe, dout, tokens});
    cpu::encoder_backward(dwte, dwpe, dout, tokens, B, T, C);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C, float eps) override {
    guard("layernorm_forward", {out, mean, rstd, inp, weight, bias});
    cpu::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
  }
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override {
    guard("layernorm_backward", {dinp, dweight, dbias, dout, inp, weight, mean, rstd});
    cpu::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  }
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                      int IC, int OC, WeightLayout layout) override {
    guard("matmul_forward", {out, inp, weight, bias});
    cpu::matmul_forward(out, inp, weight, bias, N, IC, OC, layout);
  }
  void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int N, int IC, int OC,
                       WeightLayout layout) override {
    guard("matmul_backward", {dinp, dweight, dbias, dout, inp, weight});
    cpu::matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, IC, OC, layout);
  }
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                         int NH) override {
    guard("attention_forward", {out, att, qkv});
    cpu::attention_forward(out, att, qkv, B, T, C, NH);
  }
  // The CPU kernels materialise the probabilities and need not the forward's output.
  void attention_backward(float* dqkv, float* datt_scratch, const float* dout, const float* qkv,
                          const float* att, const float* out, int B, int T, int C,
                          int NH) override {
    guard("attention_backward", {dqkv, datt_scratch, dout, qkv, att, out});
    cpu::attention_backward(dqkv, datt_scratch, dout, qkv, att, B, T, C, NH);
  }
  void gelu_forward(float* out, const float* inp, int64_t N) override {
    guard("gelu_forward", {out, inp});
    cpu::gelu_forward(out, inp, N);
  }
  void gelu_backward_inplace(float* d, const float* inp, int64_t N) override {
    guard("gelu_backward_inplace", {d, inp});
    cpu::gelu_backward_inplace(d, inp, N);
  }
  void fill_zero(float* x, int64_t N) override {
    guard("fill_zero", {x});
    cpu::fill_zero(x, N);
  }
  void residual_forward(float* out, const float* a, const float* b, int64_t N) override {
    guard("residual_forward", {out, a, b});
    cpu::residual_forward(out, a, b, N);
  }
  void add_inplace(float* dst, const float* src, int64_t N) override {
    guard("add_inplace", {dst, src});
    cpu::add_inplace(dst, src, N);
  }
  void softmax_cross_entropy_forward(float* losses, float* probs, const float* logits,
                                     const int32_t* targets, int N, int V) override {
    guard("softmax_cross_entropy_forward", {losses, probs, logits, targets});
    cpu::softmax_cross_entropy_forward(losses, probs, logits, targets, N, V);
  }
  void softmax_cross_entropy_fused(float* losses, float* dlogits, const float* logits,
                                   const int32_t* targets, float dloss, int N, int V) override {
    guard("softmax_cross_entropy_fused", {losses, dlogits, logits, targets});
    cpu::softmax_cross_entropy_fused(losses, dlogits, logits, targets, dloss, N, V);
  }

  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                       float eps) override {
    guard("rmsnorm_forward", {out, rstd, inp, weight});
    cpu::rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
  }
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                        const float* weight, const float* rstd, int N, int C) override {
    guard("rmsnorm_backward", {dinp, dweight, dout, inp, weight, rstd});
    cpu::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
  }
  void rope_forward(float* x, const float* cos, const float* sin, int N, int T, int heads, int hs,
                    int64_t stride) override {
    guard("rope_forward", {x, cos, sin});
    cpu::rope_forward(x, cos, sin, N, T, heads, hs, stride);
  }
  void rope_backward(float* dx, const float* cos, const float* sin, int N, int T, int heads, int hs,
                     int64_t stride) override {
    guard("rope_backward", {dx, cos, sin});
    cpu::rope_backward(dx, cos, sin, N, T, heads, hs, stride);
  }
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) override {
    guard("swiglu_forward", {out, gate, up});
    cpu::swiglu_forward(out, gate, up, N);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                       const float* up, int64_t N) override {
    guard("swiglu_backward", {dgate, dup, dout, gate, up});
    cpu::swiglu_backward(dgate, dup, dout, gate, up, N);
  }
  void expand_kv_heads(float* qkv, const float* q, const float* k, const float* v, int N, int NH,
                       int KVH, int hs) override {
    guard("expand_kv_heads", {qkv, q, k, v});
    cpu::expand_kv_heads(qkv, q, k, v, N, NH, KVH, hs);
  }
  void reduce_kv_heads(float* dq, float* dk, float* dv, const float* dqkv, int N, int NH, int KVH,
                       int hs) override {
    guard("reduce_kv_heads", {dq, dk, dv, dqkv});
    cpu::reduce_kv_heads(dq, dk, dv, dqkv, N, NH, KVH, hs);
  }

  void to_f32(float* out, const void* in, DType dtype, int64_t n) override {
    guard("to_f32", {out, in});
    cpu::to_f32(out, in, dtype, n);
  }
  void from_f32(void* out, DType dtype, const float* in, int64_t n) override {
    guard("from_f32", {out, in});
    cpu::from_f32(out, dtype, in, n);
  }
  void add_f32_into(void* out, DType dtype, const float* in, int64_t n) override {
    guard("add_f32_into", {out, in});
    cpu::add_f32_into(out, dtype, in, n);
  }
  void convert_scaled(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                      float scale) override {
    guard("convert_scaled", {out, in});
    cpu::convert_scaled(out, out_dtype, in, in_dtype, n, scale);
  }
  void add_scaled_into(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                       float scale) override {
    guard("add_scaled_into", {out, in});
    cpu::add_scaled_into(out, out_dtype, in, in_dtype, n, scale);
  }

  double sum_of_squares(const float* x, int64_t n) override {
    guard("sum_of_squares", {x});
    return cpu::sum_of_squares(x, n);
  }
  void sum_of_squares_into(double* result, const void* x, DType dtype, int64_t n) override {
    guard("sum_of_squares_into", {result, x});
    *result = cpu::sum_of_squares(x, dtype, n);
  }
  void scale_inplace(float* x, float scale, int64_t n) override {
    guard("scale_inplace", {x});
    cpu::scale_inplace(x, scale, n);
  }
  void adam_step(float* params, const StepIo& io, float* exp_avg, float* exp_avg_sq, int64_t n,
                 double lr, int64_t step, const AdamOptions& options) override {
    guard("adam_step", {params, io.grads, io.params16, exp_avg, exp_avg_sq});
    cpu::adam_step(params, io, exp_avg, exp_avg_sq, n, lr, step, options);
  }
  void sgd_step(float* params, const StepIo& io, float* momentum_buffer, int64_t n, double lr,
                int64_t step, const SgdOptions& options) override {
    guard("sgd_step", {params, io.grads, io.params16, momentum_buffer});
    cpu::sgd_step(params, io, momentum_buffer, n, lr, step, options);
  }

 private:
  Device device_;
};

}  // namespace

Ops& cpu_ops() {
  static CpuOps ops(Device::cpu());
  return ops;
}

std::unique_ptr<Ops> make_ops(Device device, MatmulPrecision precision) {
  if (device.type != DeviceType::kCuda) return std::make_unique<CpuOps>(device);
#if defined(DS_WITH_CUDA)
  return std::make_unique<cuda::CudaOps>(device.index, precision);
#else
  (void)precision;
  throw UsageError(
      fmt::format("{} was asked for, but this build of dstrain has no CUDA", device.str()),
      "rebuild with -DDS_CUDA=ON, or use train.device: cpu");
#endif
}

}  // namespace ds::tensor
