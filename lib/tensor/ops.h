// The op interface the model runs on (DESIGN.md, "Compute"): one virtual per kernel of
// tensor/cpu/kernels.h and llama_kernels.h, with the same arguments and contracts, plus
// the memory movement a device needs. The CPU implementation (cpu_ops()) calls those kernels;
// the CUDA one (tensor/cuda/cuda_ops.h) queues the CUDA kernels on its compute stream. A
// layer written against Ops runs unchanged on either: every pointer it passes lives on
// device(), in tensor::Buffers allocated there.
//
// Ops calls are ordered with each other (one stream); the only calls that wait for the
// device are download() and sync(). One virtual call per kernel costs nothing next to the
// kernels themselves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "tensor/cpu/kernels.h"
#include "tensor/dtype.h"
#include "tensor/matmul_precision.h"
#include "tensor/memory.h"
#include "tensor/optimizer_options.h"
#include "tensor/tensor.h"

namespace ds::tensor {

using cpu::WeightLayout;

class Ops {
 public:
  virtual ~Ops() = default;

  // Where the pointers given to this object's ops live.
  virtual Device device() const = 0;
  // The device's product name ("NVIDIA H100 80GB HBM3"); "" for the CPU.
  virtual std::string device_name() const = 0;
  // One line on how the device ran its kernels so far, for the log (CUDA: which matmuls took
  // cuBLASLt's fused epilogues); "" where there is nothing to say.
  virtual std::string kernel_report() const { return ""; }
  // A training step begins: for the device's measuring aids (CUDA: a profiler started at a
  // chosen step, so that a trace leaves out the first step's one-time work).
  virtual void begin_step() {}
  // A zeroed Buffer of `bytes` on device(), accounted under `category`.
  Buffer allocate(size_t bytes, MemoryCategory category) const {
    return Buffer(bytes, category, device());
  }
  Buffer allocate_floats(int64_t n, MemoryCategory category) const {
    return allocate(sizeof(float) * static_cast<size_t>(n), category);
  }
  // Host memory for copies to and from device(): page-locked on a GPU (faster copies).
  virtual Buffer allocate_staging(size_t bytes, MemoryCategory category) const {
    return Buffer(bytes, category);
  }

  // Makes `buffer` staging memory of at least `bytes`, replacing it when it is smaller (its
  // contents are then lost).
  void grow_staging(Buffer& buffer, size_t bytes, MemoryCategory category) const {
    if (buffer.size() < bytes) buffer = allocate_staging(bytes, category);
  }

  // Memory movement. upload: host → device() (the host memory may be reused on return);
  // download: device() → host, waiting until the data is there; copy: within device().
  virtual void upload(void* dst, const void* host, size_t bytes) = 0;
  virtual void download(void* host, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  // `bytes` zero bytes at dst, in order with the other ops (Buffer::zero waits for the whole
  // device instead).
  virtual void zero_bytes(void* dst, size_t bytes) = 0;
  // Waits until every op queued so far has finished.
  virtual void sync() = 0;

  // tensor/cpu/kernels.h
  virtual void encoder_forward(float* out, const int32_t* tokens, const float* wte,
                               const float* wpe, int B, int T, int C) = 0;
  // host_tokens (nullable): the same ids in host memory, where the caller has them. A GPU groups
  // the positions by token on the host, and would otherwise wait to read the ids back.
  virtual void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                                const int32_t* host_tokens, int B, int T, int C) = 0;
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                 const float* weight, const float* bias, int N, int C,
                                 float eps) = 0;
  virtual void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                  const float* inp, const float* weight, const float* mean,
                                  const float* rstd, int N, int C) = 0;
  // dinp = dresidual + layernorm's input gradient, WRITTEN (a residual connection's gradient
  // joined where the norm's is made; a GPU does both in one pass); dweight and dbias += theirs.
  // dresidual may be dinp itself (then this is layernorm_backward), but not overlap it otherwise.
  virtual void layernorm_backward_onto(float* dinp, const float* dresidual, float* dweight,
                                       float* dbias, const float* dout, const float* inp,
                                       const float* weight, const float* mean, const float* rstd,
                                       int N, int C) {
    if (dinp != dresidual)
      copy(dinp, dresidual, sizeof(float) * static_cast<size_t>(int64_t{N} * C));
    layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  }
  virtual void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                              int N, int IC, int OC, WeightLayout layout) = 0;
  virtual void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, int N, int IC, int OC,
                               WeightLayout layout) = 0;
  // Attention keeps `att` for its backward and uses `datt_scratch`, of the same size, there;
  // that size in floats comes from the function below: by default the T × T probabilities
  // (B·NH·T·T), as the CPU kernels materialise them; a flash-style implementation keeps a
  // statistic per row. The backward also reads the forward's output `out`.
  virtual int64_t attention_saved_floats(int B, int T, int C, int NH) const {
    (void)C;
    return int64_t{B} * NH * T * T;
  }
  virtual void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                                 int NH) = 0;
  virtual void attention_backward(float* dqkv, float* datt_scratch, const float* dout,
                                  const float* qkv, const float* att, const float* out, int B,
                                  int T, int C, int NH) = 0;
  virtual void gelu_forward(float* out, const float* inp, int64_t N) = 0;
  virtual void gelu_backward_inplace(float* d, const float* inp, int64_t N) = 0;
  virtual void fill_zero(float* x, int64_t N) = 0;
  virtual void residual_forward(float* out, const float* a, const float* b, int64_t N) = 0;
  virtual void add_inplace(float* dst, const float* src, int64_t N) = 0;
  virtual void softmax_cross_entropy_forward(float* losses, float* probs, const float* logits,
                                             const int32_t* targets, int N, int V) = 0;
  virtual void softmax_cross_entropy_fused(float* losses, float* dlogits, const float* logits,
                                           const int32_t* targets, float dloss, int N, int V) = 0;

  // GPT-2's MLP matmuls with their GELU, which a GPU fuses into the GEMMs' epilogues; these
  // versions compose the ops above. matmul_gelu_forward: pre_gelu = inp·W + bias (kept for the
  // backward), out = GELU(pre_gelu). matmul_gelu_backward, for a matmul whose input was
  // GELU(pre_gelu): dpre_gelu = gelu'(pre_gelu) ⊙ (dout·Wᵀ), WRITTEN (no buffer for the GELU's
  // output gradient); dweight and dbias accumulate as in matmul_backward.
  virtual void matmul_gelu_forward(float* out, float* pre_gelu, const float* inp,
                                   const float* weight, const float* bias, int N, int IC, int OC,
                                   WeightLayout layout) {
    matmul_forward(pre_gelu, inp, weight, bias, N, IC, OC, layout);
    gelu_forward(out, pre_gelu, int64_t{N} * OC);
  }
  virtual void matmul_gelu_backward(float* dpre_gelu, float* dweight, float* dbias,
                                    const float* dout, const float* inp, const float* weight,
                                    const float* pre_gelu, int N, int IC, int OC,
                                    WeightLayout layout) {
    fill_zero(dpre_gelu, int64_t{N} * IC);
    matmul_backward(dpre_gelu, dweight, dbias, dout, inp, weight, N, IC, OC, layout);
    gelu_backward_inplace(dpre_gelu, pre_gelu, int64_t{N} * IC);
  }

  // GPT-2's pre-norm sublayers, each with its layernorm and residual connection:
  //   out = x + f(layernorm(x))       (x and out [N, C], N = B·T, not overlapping)
  // the MLP, f(h) = GELU(h·W1 + b1)·W2 + b2 with hidden width H, or attention, f(h) =
  // attention(h·W1 + b1)·W2 + b2 with W1 the qkv weights; both weights WeightLayout::kInOut. A GPU
  // runs each in a layout of its own. `saved` keeps what the backward reads (mlp_saved_floats,
  // attention_block_saved_floats): here, through the ops above, the norm's output, mean and rstd,
  // then the MLP's pre-GELU and GELU activations (N x H each), or qkv [N, 3C], attention's own
  // (attention_saved_floats) and attention's output [N, C], all fp32; a GPU's bf16 runs keep the
  // norm's output and those activations in bf16, in about half the space. The backwards WRITE
  // dx = dout + the gradient through f and the norm (dx may be dout itself: then it adds) and add
  // the parameters' gradients into `grads`, using SublayerScratch.
  struct SublayerWeights {
    const float *ln_w, *ln_b;  // the layernorm's
    const float *w1, *b1;      // the MLP's expansion, or qkv
    const float *w2, *b2;      // the projection
  };
  struct SublayerGrads {
    float *ln_w, *ln_b, *w1, *b1, *w2, *b2;
  };
  // What a sublayer backward made of its dx for the next sublayer backward of the same block, where
  // an implementation can make it in the pass that writes dx (GPU bf16 runs: dx's bf16 copy and
  // column sums, which the attention sublayer's backward would otherwise read dx again for). The
  // block passes one to the MLP's backward as SublayerScratch::dx_handed and then to the
  // attention sublayer's as dout_handed, with nothing in between; the data stays with the
  // implementation. The CPU's makes nothing.
  struct HandedGradient {
    const float* dx = nullptr;  // the dx it was made with; nullptr: nothing made
    int64_t rows = 0, columns = 0;
    // The implementation's, to recognise its own latest hand-off (an earlier one's data is gone).
    const void* maker = nullptr;
    uint64_t serial = 0;
  };
  struct SublayerScratch {
    float* d_ln;   // [N, C]: the gradient of the norm's output
    float* d_mid;  // the MLP's hidden gradient [N, H], or attention's output's [N, C]
    float* d_qkv;  // attention: [N, 3C]
    float* d_att;  // attention: attention_saved_floats(B, T, C, NH)
    HandedGradient* dx_handed = nullptr;  // optional: what the backward made of dx (reset if none)
    const HandedGradient* dout_handed = nullptr;  // optional: the previous backward's, for dout
  };

  virtual int64_t mlp_saved_floats(int N, int C, int H) const {
    return int64_t{N} * C + 2 * int64_t{N} + 2 * int64_t{N} * H;
  }
  virtual void mlp_forward(float* out, float* saved, const float* x, const SublayerWeights& w,
                           float eps, int N, int C, int H) {
    const auto n = norm_in(saved, N, C);
    float* pre_gelu = n.end;
    float* act = pre_gelu + int64_t{N} * H;
    layernorm_forward(n.out, n.mean, n.rstd, x, w.ln_w, w.ln_b, N, C, eps);
    matmul_gelu_forward(act, pre_gelu, n.out, w.w1, w.b1, N, C, H, WeightLayout::kInOut);
    matmul_forward(out, act, w.w2, w.b2, N, H, C, WeightLayout::kInOut);
    residual_forward(out, x, out, int64_t{N} * C);
  }
  virtual void mlp_backward(float* dx, const SublayerGrads& g, const SublayerScratch& t,
                            const float* dout, const float* saved, const float* x,
                            const SublayerWeights& w, int N, int C, int H) {
    const auto n = norm_in(saved, N, C);
    const float* pre_gelu = n.end;
    const float* act = pre_gelu + int64_t{N} * H;
    matmul_gelu_backward(t.d_mid, g.w2, g.b2, dout, act, w.w2, pre_gelu, N, H, C,
                         WeightLayout::kInOut);
    fill_zero(t.d_ln, int64_t{N} * C);
    matmul_backward(t.d_ln, g.w1, g.b1, t.d_mid, n.out, w.w1, N, C, H, WeightLayout::kInOut);
    layernorm_backward_onto(dx, dout, g.ln_w, g.ln_b, t.d_ln, x, w.ln_w, n.mean, n.rstd, N, C);
  }

  virtual int64_t attention_block_saved_floats(int B, int T, int C, int NH) const {
    const int64_t N = int64_t{B} * T;
    return N * C + 2 * N + 4 * N * C + attention_saved_floats(B, T, C, NH);
  }
  virtual void attention_block_forward(float* out, float* saved, const float* x,
                                       const SublayerWeights& w, float eps, int B, int T, int C,
                                       int NH) {
    const int N = B * T;
    const auto n = norm_in(saved, N, C);
    float* qkv = n.end;
    float* att = qkv + 3 * int64_t{N} * C;
    float* atty = att + attention_saved_floats(B, T, C, NH);
    layernorm_forward(n.out, n.mean, n.rstd, x, w.ln_w, w.ln_b, N, C, eps);
    matmul_forward(qkv, n.out, w.w1, w.b1, N, C, 3 * C, WeightLayout::kInOut);
    attention_forward(atty, att, qkv, B, T, C, NH);
    matmul_forward(out, atty, w.w2, w.b2, N, C, C, WeightLayout::kInOut);
    residual_forward(out, x, out, int64_t{N} * C);
  }
  virtual void attention_block_backward(float* dx, const SublayerGrads& g, const SublayerScratch& t,
                                        const float* dout, const float* saved, const float* x,
                                        const SublayerWeights& w, int B, int T, int C, int NH) {
    const int N = B * T;
    const int64_t NC = int64_t{N} * C;
    const auto n = norm_in(saved, N, C);
    const float* qkv = n.end;
    const float* att = qkv + 3 * NC;
    const float* atty = att + attention_saved_floats(B, T, C, NH);
    fill_zero(t.d_mid, NC);
    matmul_backward(t.d_mid, g.w2, g.b2, dout, atty, w.w2, N, C, C, WeightLayout::kInOut);
    fill_zero(t.d_qkv, 3 * NC);
    attention_backward(t.d_qkv, t.d_att, t.d_mid, qkv, att, atty, B, T, C, NH);
    fill_zero(t.d_ln, NC);
    matmul_backward(t.d_ln, g.w1, g.b1, t.d_qkv, n.out, w.w1, N, C, 3 * C, WeightLayout::kInOut);
    layernorm_backward_onto(dx, dout, g.ln_w, g.ln_b, t.d_ln, x, w.ln_w, n.mean, n.rstd, N, C);
  }

  // The LM head of a training step, which a GPU runs on its own layout: logits = inp·headᵀ (head
  // [V, C] as WeightLayout::kOutIn), then the losses and d(objective)/d(logits) in one pass as
  // softmax_cross_entropy_fused. The logits and their gradient stay in `scratch`
  // (classifier_scratch_floats(N, V) floats) in a form only classifier_backward reads: here N x V
  // fp32; a GPU pads the rows for aligned GEMMs and, in bf16 runs, keeps them in bf16 (as
  // PyTorch's autocast keeps a bf16 matmul's output). classifier_backward: dinp and dhead +=
  // the gradients through the head.
  virtual int64_t classifier_scratch_floats(int N, int V) const { return int64_t{N} * V; }
  virtual void classifier_forward(float* losses, float* scratch, const float* inp,
                                  const float* head, const int32_t* targets, float dloss, int N,
                                  int C, int V) {
    matmul_forward(scratch, inp, head, nullptr, N, C, V, WeightLayout::kOutIn);
    softmax_cross_entropy_fused(losses, scratch, scratch, targets, dloss, N, V);
  }
  virtual void classifier_backward(float* dinp, float* dhead, const float* scratch,
                                   const float* inp, const float* head, int N, int C, int V) {
    matmul_backward(dinp, dhead, nullptr, scratch, inp, head, N, C, V, WeightLayout::kOutIn);
  }

  // tensor/cpu/llama_kernels.h
  virtual void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight,
                               int N, int C, float eps) = 0;
  virtual void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                                const float* weight, const float* rstd, int N, int C) = 0;
  virtual void rope_forward(float* x, const float* cos, const float* sin, int N, int T, int heads,
                            int hs, int64_t stride) = 0;
  virtual void rope_backward(float* dx, const float* cos, const float* sin, int N, int T, int heads,
                             int hs, int64_t stride) = 0;
  virtual void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) = 0;
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                               const float* up, int64_t N) = 0;
  virtual void expand_kv_heads(float* qkv, const float* q, const float* k, const float* v, int N,
                               int NH, int KVH, int hs) = 0;
  virtual void reduce_kv_heads(float* dq, float* dk, float* dv, const float* dqkv, int N, int NH,
                               int KVH, int hs) = 0;

  // tensor/cpu/cast.h: between fp32 compute buffers and the storage dtypes, and scaled
  // conversions for gradients on the wire.
  virtual void to_f32(float* out, const void* in, DType dtype, int64_t n) = 0;
  virtual void from_f32(void* out, DType dtype, const float* in, int64_t n) = 0;
  virtual void add_f32_into(void* out, DType dtype, const float* in, int64_t n) = 0;
  virtual void convert_scaled(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                              float scale) = 0;
  virtual void add_scaled_into(void* out, DType out_dtype, const void* in, DType in_dtype,
                               int64_t n, float scale) = 0;

  // Flat arrays: the gradient norm's sum of x^2 in double (waits for the device; the _into form,
  // over x stored as `dtype` and widened to fp32 first, writes it to one double on device() in
  // order with the other ops, so that a norm over many pieces waits once), scaling, and the
  // optimizer updates of tensor/cpu/optimizer_kernels.h, which read the gradient and write the
  // parameters' 16-bit copy as `io` says (optimizer_options.h).
  virtual double sum_of_squares(const float* x, int64_t n) = 0;
  virtual void sum_of_squares_into(double* result, const void* x, DType dtype, int64_t n) = 0;
  virtual void scale_inplace(float* x, float scale, int64_t n) = 0;
  virtual void adam_step(float* params, const StepIo& io, float* exp_avg, float* exp_avg_sq,
                         int64_t n, double lr, int64_t step, const AdamOptions& options) = 0;
  virtual void sgd_step(float* params, const StepIo& io, float* momentum_buffer, int64_t n,
                        double lr, int64_t step, const SgdOptions& options) = 0;

 protected:
  // Where the composed sublayers keep their layernorm's output [N, C], mean and rstd [N] at the
  // start of their saved region, and where the rest begins.
  template <typename Float>  // float, or const float
  struct Norm {
    Float *out, *mean, *rstd, *end;
  };
  template <typename Float>
  static Norm<Float> norm_in(Float* saved, int N, int C) {
    Float* mean = saved + int64_t{N} * C;
    return {saved, mean, mean + N, mean + 2 * int64_t{N}};
  }
};

// The CPU implementation (OpenBLAS + OpenMP); one object serves every thread.
Ops& cpu_ops();

// A new Ops on `device`: the CPU's (also for the emulated device), or a CUDA device's own
// stream and cuBLAS handle with its matmuls at `precision` (ignored elsewhere).
// Throws ds::UsageError for a CUDA device in a build without CUDA.
std::unique_ptr<Ops> make_ops(Device device, MatmulPrecision precision = MatmulPrecision::kFp32);

}  // namespace ds::tensor
