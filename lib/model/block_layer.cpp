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
  for (int i = 0; i < 6; ++i) {
    attention_[i] = local_offset(layout, i);
    mlp_[i] = local_offset(layout, 6 + i);
  }
}

BlockLayer::Saved BlockLayer::carve(FloatCarver& region, int B, int T) const {
  const int64_t BT = int64_t{B} * T;
  Saved s{};
  s.attention = region.take(ops_.attention_block_saved_floats(B, T, C_, NH_));
  s.res = region.take(BT * C_);
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
  using Weights = tensor::Ops::SublayerWeights;
  FloatCarver region(saved);
  const Saved s = carve(region, mb.B, mb.T);
  // h = x + attn(ln_1(x)), then y = h + mlp(ln_2(h)).
  ops_.attention_block_forward(s.res, s.attention, x, sublayer_at<Weights>(w, attention_), eps_,
                               mb.B, mb.T, C_, NH_);
  ops_.mlp_forward(y, s.mlp, s.res, sublayer_at<Weights>(w, mlp_), eps_, mb.B * mb.T, C_, 4 * C_);
}

void BlockLayer::backward(const float* w, float* dw, const MicroBatch& mb, const float* x,
                          const float* dy, float* dx, float* saved) {
  using Weights = tensor::Ops::SublayerWeights;
  using Grads = tensor::Ops::SublayerGrads;
  FloatCarver region(saved);
  const Saved s = carve(region, mb.B, mb.T);
  BackwardScratch& t = *scratch_;
  // dx holds h's gradient (dy, joined by the MLP branch's), then x's (h's, joined by attention's).
  // h's gradient goes from the MLP's backward to attention's as the ops may hand it on.
  tensor::Ops::HandedGradient handed;
  const tensor::Ops::SublayerScratch mlp_scratch{.d_ln = t.d_ln.as<float>(),
                                                 .d_mid = t.d_fch.as<float>(),
                                                 .d_qkv = nullptr,
                                                 .d_att = nullptr,
                                                 .dx_handed = &handed};
  ops_.mlp_backward(dx, sublayer_at<Grads>(dw, mlp_), mlp_scratch, dy, s.mlp, s.res,
                    sublayer_at<Weights>(w, mlp_), mb.B * mb.T, C_, 4 * C_);
  const tensor::Ops::SublayerScratch attention_scratch{.d_ln = t.d_ln.as<float>(),
                                                       .d_mid = t.d_atty.as<float>(),
                                                       .d_qkv = t.d_qkv.as<float>(),
                                                       .d_att = t.d_att.as<float>(),
                                                       .dout_handed = &handed};
  ops_.attention_block_backward(dx, sublayer_at<Grads>(dw, attention_), attention_scratch, dx,
                                s.attention, x, sublayer_at<Weights>(w, attention_), mb.B, mb.T, C_,
                                NH_);
}

}  // namespace ds::model
