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
  // dresidual must not overlap dinp.
  virtual void layernorm_backward_onto(float* dinp, const float* dresidual, float* dweight,
                                       float* dbias, const float* dout, const float* inp,
                                       const float* weight, const float* mean, const float* rstd,
                                       int N, int C) {
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

  // GPT-2's MLP with its residual connection, out = residual + GELU(inp·W_fc + b_fc)·W_proj +
  // b_proj (inp, residual and out [N, C], out not overlapping residual; hidden width H; both
  // weights WeightLayout::kInOut), which a GPU runs in a layout of its own (adding the residual
  // in the projection's GEMM). `saved`
  // (mlp_saved_floats(N, C, H) floats) keeps what the backward reads: here the pre-GELU and GELU
  // activations, N x H fp32 each, through the fused ops above; a GPU's bf16 runs keep them, and a
  // copy of inp, in bf16, in about half the space. mlp_backward: dinp is WRITTEN (a fresh
  // gradient buffer, which a GPU then neither zeroes nor reads) and the four parameter gradients
  // += theirs, from dout (`scratch`: N x H floats for the hidden gradient).
  virtual int64_t mlp_saved_floats(int N, int C, int H) const {
    (void)C;
    return 2 * int64_t{N} * H;
  }
  virtual void mlp_forward(float* out, float* saved, const float* inp, const float* residual,
                           const float* w_fc, const float* b_fc, const float* w_proj,
                           const float* b_proj, int N, int C, int H) {
    float* pre_gelu = saved;
    float* act = saved + int64_t{N} * H;
    matmul_gelu_forward(act, pre_gelu, inp, w_fc, b_fc, N, C, H, WeightLayout::kInOut);
    matmul_forward(out, act, w_proj, b_proj, N, H, C, WeightLayout::kInOut);
    residual_forward(out, residual, out, int64_t{N} * C);
  }
  virtual void mlp_backward(float* dinp, float* dw_fc, float* db_fc, float* dw_proj, float* db_proj,
                            float* scratch, const float* dout, const float* saved, const float* inp,
                            const float* w_fc, const float* w_proj, int N, int C, int H) {
    const float* pre_gelu = saved;
    const float* act = saved + int64_t{N} * H;
    matmul_gelu_backward(scratch, dw_proj, db_proj, dout, act, w_proj, pre_gelu, N, H, C,
                         WeightLayout::kInOut);
    fill_zero(dinp, int64_t{N} * C);
    matmul_backward(dinp, dw_fc, db_fc, scratch, inp, w_fc, N, C, H, WeightLayout::kInOut);
  }

  // GPT-2's attention sublayer with its residual connection, out = residual +
  // attention(inp·W_qkv + b_qkv)·W_proj + b_proj (inp, residual and out [N, C], N = B·T, out not
  // overlapping residual; both weights WeightLayout::kInOut), which a GPU runs in a layout of its
  // own. `saved`
  // (attention_block_saved_floats(B, T, C, NH) floats) keeps what the backward reads: here, through
  // the ops above, qkv [N, 3C], attention's own (attention_saved_floats) and attention's output
  // [N, C] in fp32; a GPU's bf16 runs keep qkv and the output in bf16, in half the space.
  // attention_block_backward: dinp WRITTEN (as mlp_backward's) and the four parameter gradients
  // += theirs, from dout, with the composed backward's scratch (AttentionBlockScratch).
  struct AttentionBlockScratch {
    float* d_out;  // [N, C]: the gradient of attention's output
    float* d_qkv;  // [N, 3C]
    float* d_att;  // attention_saved_floats(B, T, C, NH)
  };
  virtual int64_t attention_block_saved_floats(int B, int T, int C, int NH) const {
    return 4 * int64_t{B} * T * C + attention_saved_floats(B, T, C, NH);
  }
  virtual void attention_block_forward(float* out, float* saved, const float* inp,
                                       const float* residual, const float* w_qkv,
                                       const float* b_qkv, const float* w_proj, const float* b_proj,
                                       int B, int T, int C, int NH) {
    const int N = B * T;
    float* qkv = saved;
    float* att = qkv + 3 * int64_t{N} * C;
    float* atty = att + attention_saved_floats(B, T, C, NH);
    matmul_forward(qkv, inp, w_qkv, b_qkv, N, C, 3 * C, WeightLayout::kInOut);
    attention_forward(atty, att, qkv, B, T, C, NH);
    matmul_forward(out, atty, w_proj, b_proj, N, C, C, WeightLayout::kInOut);
    residual_forward(out, residual, out, int64_t{N} * C);
  }
  virtual void attention_block_backward(float* dinp, float* dw_qkv, float* db_qkv, float* dw_proj,
                                        float* db_proj, const AttentionBlockScratch& scratch,
                                        const float* dout, const float* saved, const float* inp,
                                        const float* w_qkv, const float* w_proj, int B, int T,
                                        int C, int NH) {
    const int N = B * T;
    const int64_t NC = int64_t{N} * C;
    const float* qkv = saved;
    const float* att = qkv + 3 * NC;
    const float* atty = att + attention_saved_floats(B, T, C, NH);
    fill_zero(scratch.d_out, NC);
    matmul_backward(scratch.d_out, dw_proj, db_proj, dout, atty, w_proj, N, C, C,
                    WeightLayout::kInOut);
    fill_zero(scratch.d_qkv, 3 * NC);
    attention_backward(scratch.d_qkv, scratch.d_att, scratch.d_out, qkv, att, atty, B, T, C, NH);
    fill_zero(dinp, NC);
    matmul_backward(dinp, dw_qkv, db_qkv, scratch.d_qkv, inp, w_qkv, N, C, 3 * C,
                    WeightLayout::kInOut);
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

  // Flat fp32 arrays: the gradient norm's sum of x^2 in double (waits for the device; the
  // _into form writes it to one double on device() in order with the other ops, so that a norm
  // over many pieces waits once), scaling, and the optimizer updates of
  // tensor/cpu/optimizer_kernels.h.
  virtual double sum_of_squares(const float* x, int64_t n) = 0;
  virtual void sum_of_squares_into(double* result, const float* x, int64_t n) = 0;
  virtual void scale_inplace(float* x, float scale, int64_t n) = 0;
  virtual void adam_step(float* params, const float* grads, float* exp_avg, float* exp_avg_sq,
                         int64_t n, double lr, int64_t step, const AdamOptions& options) = 0;
  virtual void sgd_step(float* params, const float* grads, float* momentum_buffer, int64_t n,
                        double lr, int64_t step, const SgdOptions& options) = 0;
};

// The CPU implementation (OpenBLAS + OpenMP); one object serves every thread.
Ops& cpu_ops();

// A new Ops on `device`: the CPU's (also for the emulated device), or a CUDA device's own
// stream and cuBLAS handle with its matmuls at `precision` (ignored elsewhere).
// Throws ds::UsageError for a CUDA device in a build without CUDA.
std::unique_ptr<Ops> make_ops(Device device, MatmulPrecision precision = MatmulPrecision::kFp32);

}  // namespace ds::tensor
