#include "tensor/cuda/bf16_mlp.h"

#include <cuda_bf16.h>

#include <cstdint>
#include <utility>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/bf16_region.h"
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/lt_matmul.h"

namespace ds::tensor::cuda {

namespace {

using bf16 = __nv_bfloat16;

// The saved region's tensors: pre and act [N,H] and the norm's output ln [N,C] in bf16 from its
// first 16-byte boundary (each stays aligned: H and C are multiples of 8), then the norm's mean
// and rstd [N].
template <typename Float>
struct Saved {
  decltype(bf16_from(std::declval<Float*>())) pre, act, ln;
  Float *mean, *rstd;
  Saved(Float* region, int64_t N, int64_t C, int64_t H)
      : pre(bf16_from(region)),
        act(pre + N * H),
        ln(act + N * H),
        mean(reinterpret_cast<Float*>(ln + N * C)),
        rstd(mean + N) {}
};

}  // namespace

int64_t Bf16Mlp::saved_floats(int N, int C, int H) {
  return 3 + int64_t{N} * H + (int64_t{N} * C + 1) / 2 + 2 * int64_t{N};
}

bool Bf16Mlp::supports(int N, int C, int H) {
  if (H <= 0 || H % 8 != 0 || C % 8 != 0) return false;
  // The expansion writes bf16 and its input gradient bf16 too (the norm's backward reads it); the
  // projection writes fp32 and its input gradient bf16.
  return products_.supports(N, C, H) && products_.supports(N, H, C);
}

void Bf16Mlp::forward(float* out, float* saved, const float* x, const Ops::SublayerWeights& w,
                      float eps, int N, int C, int H, cudaStream_t stream) {
  if (N == 0) return;
  const Saved<float> s(saved, N, C, H);
  mixed::layernorm_forward_to_bf16(s.ln, s.mean, s.rstd, x, w.ln_w, w.ln_b, N, C, eps, stream);
  const void* w_fc16 = rounded_to_bf16(w.w1, int64_t{C} * H, w_fc16_, stream);
  const void* b_fc16 = rounded_to_bf16(w.b1, H, b_fc16_, stream);
  const void* w_proj16 = rounded_to_bf16(w.w2, int64_t{H} * C, w_proj16_, stream);
  lt_.forward_gelu(s.act, s.pre, s.ln, w_fc16, b_fc16, N, C, H, WeightLayout::kInOut, DType::kBF16,
                   stream);

  products_.project(out, x, s.act, w_proj16, w.b2, N, H, C, stream);
}

bool Bf16Mlp::backward(float* dx, const Ops::SublayerGrads& g, const Ops::SublayerScratch& t,
                       const float* dout, const float* saved, const float* x,
                       const Ops::SublayerWeights& w, int N, int C, int H,
                       const mixed::GradientHandOff* hand_off, cudaStream_t stream) {
  if (N == 0) return false;
  const Saved<const float> s(saved, N, C, H);
  bf16* dpre = bf16_from(t.d_mid);
  bf16* dln = bf16_from(t.d_ln);
  // dout's bf16 copy for the GEMMs, and db_proj, a fixed-order fp32 column sum of the fp32 dout,
  // in one pass. The weights are rounded again rather than kept from the forward: the copies are
  // shared by every layer.
  const void* dout16 = products_.rounded_with_bias_gradient(g.b2, dout, N, C, dout16_, stream);
  const void* w_proj16 = rounded_to_bf16(w.w2, int64_t{H} * C, w_proj16_, stream);
  const void* w_fc16 = rounded_to_bf16(w.w1, int64_t{C} * H, w_fc16_, stream);

  // Through the projection and GELU: dpre in bf16, the projection's weight gradient in fp32.
  lt_.backward_gelu(dpre, nullptr, nullptr, dout16, s.act, w_proj16, s.pre, N, H, C,
                    WeightLayout::kInOut, kBf16Products, stream);
  products_.add_weight_gradient(g.w2, dout16, s.act, N, H, C, stream);

  // Through the expansion: the norm's output gradient (bf16, written), the expansion's weight
  // gradient in fp32, and db_fc, a fixed-order fp32 column sum of dpre.
  lt_.input_gradient(dln, dpre, w_fc16, N, C, H, WeightLayout::kInOut, kBf16Products, stream);
  products_.add_weight_gradient(g.w1, dpre, s.ln, N, C, H, stream);
  products_.add_bias_gradient(g.b1, dpre, DType::kBF16, N, H, stream);

  // Through the norm, joining dout (the residual connection's gradient; dx may be dout), dx
  // handed on in the same pass where asked.
  return products_.norm_backward(dx, dout, g.ln_w, g.ln_b, dln, x, w.ln_w, s.mean, s.rstd, N, C,
                                 hand_off, stream);
}

}  // namespace ds::tensor::cuda
