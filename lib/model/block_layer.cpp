#include "model/block_layer.h"

namespace ds::model {

using Layout = tensor::WeightLayout;

BlockLayer::BlockLayer(const LayerSpec& spec, const ModelLayout& layout,
                       const config::ModelConfig& m, BackwardScratch* scratch, tensor::Ops& ops)
    : Layer(spec, ops),
      C_(static_cast<int>(m.n_embd)),
      NH_(static_cast<int>(m.n_head)),
      eps_(static_cast<float>(m.layer_norm_epsilon)),
      scratch_(scratch) {
  int64_t* offsets[] = {&ln1_w_, &ln1_b_, &attn_w_, &attn_b_, &proj_w_,    &proj_b_,
                        &ln2_w_, &ln2_b_, &fc_w_,   &fc_b_,   &fc_proj_w_, &fc_proj_b_};
  for (int i = 0; i < 12; ++i) *offsets[i] = local_offset(layout, i);
}

BlockLayer::Saved BlockLayer::carve(FloatCarver& region, int B, int T) const {
  const int64_t BT = int64_t{B} * T, C = C_;
  Saved s{};
  s.ln1 = region.take(BT * C);
  s.ln1_mean = region.take(BT);
  s.ln1_rstd = region.take(BT);
  s.attention = region.take(ops_.attention_block_saved_floats(B, T, C_, NH_));
  s.res = region.take(BT * C);
  s.ln2 = region.take(BT * C);
  s.ln2_mean = region.take(BT);
  s.ln2_rstd = region.take(BT);
  s.mlp = region.take(ops_.mlp_saved_floats(static_cast<int>(BT), C_, 4 * C_));
  return s;
}

int64_t BlockLayer::saved_size(int B, int T) const {
  FloatCarver counter(nullptr);
  carve(counter, B, T);
  return counter.used();
}

void BlockLayer::forward(const float* w, const MicroBatch& mb, const float* x, float* y,
                         float* saved) {
  const int N = mb.B * mb.T, C = C_;
  FloatCarver region(saved);
  const Saved s = carve(region, mb.B, mb.T);

  ops_.layernorm_forward(s.ln1, s.ln1_mean, s.ln1_rstd, x, w + ln1_w_, w + ln1_b_, N, C, eps_);
  // The residual h = x + attn(ln1(x)), then y = h + mlp(ln2(h)), each sublayer adding its
  // residual connection.
  ops_.attention_block_forward(s.res, s.attention, s.ln1, x, w + attn_w_, w + attn_b_, w + proj_w_,
                               w + proj_b_, mb.B, mb.T, C, NH_);
  ops_.layernorm_forward(s.ln2, s.ln2_mean, s.ln2_rstd, s.res, w + ln2_w_, w + ln2_b_, N, C, eps_);
  ops_.mlp_forward(y, s.mlp, s.ln2, s.res, w + fc_w_, w + fc_b_, w + fc_proj_w_, w + fc_proj_b_, N,
                   C, 4 * C);
}

void BlockLayer::backward(const float* w, float* dw, const MicroBatch& mb, const float* x,
                          const float* dy, float* dx, float* saved) {
  const int N = mb.B * mb.T, C = C_;
  FloatCarver region(saved);
  const Saved s = carve(region, mb.B, mb.T);
  BackwardScratch& t = *scratch_;
  float* d_ln = t.d_ln.as<float>();
  float* d_fch = t.d_fch.as<float>();

  // MLP branch: y = h + mlp(h). dx holds the residual h's gradient (dy, the residual
  // connection's, joined by the norm's), then x's (x + attn(x)).
  ops_.mlp_backward(d_ln, dw + fc_w_, dw + fc_b_, dw + fc_proj_w_, dw + fc_proj_b_, d_fch, dy,
                    s.mlp, s.ln2, w + fc_w_, w + fc_proj_w_, N, C, 4 * C);
  ops_.layernorm_backward_onto(dx, dy, dw + ln2_w_, dw + ln2_b_, d_ln, s.res, w + ln2_w_,
                               s.ln2_mean, s.ln2_rstd, N, C);

  // Attention branch: h = x + attn(x).
  const tensor::Ops::AttentionBlockScratch attention_scratch{
      t.d_atty.as<float>(), t.d_qkv.as<float>(), t.d_att.as<float>()};
  ops_.attention_block_backward(d_ln, dw + attn_w_, dw + attn_b_, dw + proj_w_, dw + proj_b_,
                                attention_scratch, dx, s.attention, s.ln1, w + attn_w_, w + proj_w_,
                                mb.B, mb.T, C, NH_);
  ops_.layernorm_backward(dx, dw + ln1_w_, dw + ln1_b_, d_ln, x, w + ln1_w_, s.ln1_mean, s.ln1_rstd,
                          N, C);
}

}  // namespace ds::model
