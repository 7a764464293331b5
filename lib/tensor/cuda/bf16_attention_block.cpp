#include "tensor/cuda/bf16_attention_block.h"

#include <cuda_bf16.h>

#include <utility>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/bf16_region.h"
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/lt_matmul.h"
#include "tensor/cuda/tensor_core_attention.h"

namespace ds::tensor::cuda {

namespace {

using bf16 = __nv_bfloat16;

// The saved region's tensors: qkv [N,3C], y [N,C] and the norm's output ln [N,C] in bf16 from its
// first 16-byte boundary (each stays aligned: C is a multiple of 16 for the tensor-core
// attention), then lse [B,NH,T] and the norm's mean and rstd [N].
template <typename Float>
struct Saved {
  decltype(bf16_from(std::declval<Float*>())) qkv, y, ln;
  Float *lse, *mean, *rstd;
  Saved(Float* region, int64_t N, int C, int NH)
      : qkv(bf16_from(region)),
        y(qkv + 3 * N * C),
        ln(y + N * C),
        lse(reinterpret_cast<Float*>(ln + N * C)),
        mean(lse + N * NH),
        rstd(mean + N) {}
};

}  // namespace

bool Bf16AttentionBlock::supports(int N, int C) {
  // qkv writes bf16, the projection fp32; the backward's input gradients are bf16.
  return products_.supports(N, C, 3 * C) && products_.supports(N, C, C);
}

int64_t Bf16AttentionBlock::saved_floats(int B, int T, int C, int NH) {
  const int64_t N = int64_t{B} * T;
  return 3 + (5 * N * C + 1) / 2 + N * NH + 2 * N;
}

void Bf16AttentionBlock::forward(float* out, float* saved, const float* x,
                                 const Ops::SublayerWeights& w, float eps, int B, int T, int C,
                                 int NH, cudaStream_t stream) {
  const int N = B * T;
  if (N == 0) return;
  const Saved<float> s(saved, N, C, NH);
  mixed::layernorm_forward_to_bf16(s.ln, s.mean, s.rstd, x, w.ln_w, w.ln_b, N, C, eps, stream);
  const void* w_qkv16 = rounded_to_bf16(w.w1, 3 * int64_t{C} * C, w_qkv16_, stream);
  const void* b_qkv16 = rounded_to_bf16(w.b1, 3 * C, b_qkv16_, stream);
  lt_.forward(s.qkv, s.ln, w_qkv16, b_qkv16, N, C, 3 * C, WeightLayout::kInOut, kBf16Products,
              stream);

  attention_.forward(s.y, s.lse, s.qkv, B, T, C, NH, stream);

  const void* w_proj16 = rounded_to_bf16(w.w2, int64_t{C} * C, w_proj16_, stream);
  products_.project(out, x, s.y, w_proj16, w.b2, N, C, C, stream);
}

void Bf16AttentionBlock::backward(float* dx, const Ops::SublayerGrads& g,
                                  const Ops::SublayerScratch& t, const float* dout,
                                  const float* saved, const float* x, const Ops::SublayerWeights& w,
                                  int B, int T, int C, int NH, const mixed::GradientHandOff* handed,
                                  cudaStream_t stream) {
  const int N = B * T;
  if (N == 0) return;
  const Saved<const float> s(saved, N, C, NH);
  bf16* dy = bf16_from(t.d_mid);
  bf16* dqkv = bf16_from(t.d_qkv);
  bf16* dln = bf16_from(t.d_ln);
  float* row_dot = t.d_att;

  // Through the projection: dy in bf16, the projection's weight gradient from the saved y. The
  // bias gradient is a fixed-order fp32 column sum of the fp32 dout: handed on with its bf16 copy
  // by the MLP's backward, or made here in one pass.
  const void* dout16 = nullptr;
  if (handed != nullptr) {
    dout16 = handed->copy;
    if (g.b2 != nullptr) mixed::add_inplace(g.b2, handed->sums, C, DType::kF32, stream);
  } else {
    dout16 = products_.rounded_with_bias_gradient(g.b2, dout, N, C, dout16_, stream);
  }
  const void* w_proj16 = rounded_to_bf16(w.w2, int64_t{C} * C, w_proj16_, stream);
  lt_.input_gradient(dy, dout16, w_proj16, N, C, C, WeightLayout::kInOut, kBf16Products, stream);
  products_.add_weight_gradient(g.w2, dout16, s.y, N, C, C, stream);

  // dqkv in bf16, and db_qkv, the column sums of the bf16 dqkv, from the attention kernels' partial
  // sums beside it.
  attention_.backward(dqkv, g.b1, row_dot, dy, s.qkv, s.y, s.lse, B, T, C, NH, stream);

  // Through qkv: the norm's output gradient in bf16 (written), the weight gradient in fp32.
  const void* w_qkv16 = rounded_to_bf16(w.w1, 3 * int64_t{C} * C, w_qkv16_, stream);
  lt_.input_gradient(dln, dqkv, w_qkv16, N, C, 3 * C, WeightLayout::kInOut, kBf16Products, stream);
  products_.add_weight_gradient(g.w1, dqkv, s.ln, N, C, 3 * C, stream);

  // Through the norm, joining dout (the residual connection's gradient; dx may be dout).
  products_.norm_backward(dx, dout, g.ln_w, g.ln_b, dln, x, w.ln_w, s.mean, s.rstd, N, C, nullptr,
                          stream);
}

}  // namespace ds::tensor::cuda
