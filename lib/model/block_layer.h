// A GPT-2 transformer block (pre-LayerNorm):
//   h = x + attn_proj(attention(c_attn(ln_1(x))))
//   y = h + mlp_proj(gelu(c_fc(ln_2(h))))
// Its forward saves what the backward needs in the region the model hands in; the
// gradients of its internal activations live in a BackwardScratch shared by all
// layers (one backward at a time).
#pragma once

#include "model/backward_scratch.h"
#include "model/float_carver.h"
#include "model/layer.h"

namespace ds::model {

class BlockLayer : public Layer {
 public:
  BlockLayer(const LayerSpec& spec, const ModelLayout& layout, const config::ModelConfig& m,
             BackwardScratch* scratch, tensor::Ops& ops);

  int64_t output_size(int B, int T) const override { return int64_t{B} * T * C_; }
  int64_t saved_size(int B, int T) const override;
  void forward(const float* weights, const MicroBatch& mb, const float* x, float* y,
               float* saved) override;
  void backward(const float* weights, float* dweights, const MicroBatch& mb, const float* x,
                const float* dy, float* dx, float* saved) override;

 private:
  // The saved activations, cut from one region: each sublayer's own (Ops::attention_block_forward,
  // Ops::mlp_forward; the layernorms' included) and the residual h between them.
  struct Saved {
    float *attention, *res, *mlp;
  };
  Saved carve(FloatCarver& region, int B, int T) const;

  // A sublayer's parameters (layernorm, first product, projection) as views into a layer's
  // weights or gradients.
  using Offsets = int64_t[6];
  template <typename View, typename Float>
  static View sublayer_at(Float* base, const Offsets& offsets) {
    return {base + offsets[0], base + offsets[1], base + offsets[2],
            base + offsets[3], base + offsets[4], base + offsets[5]};
  }

  int C_, NH_;
  float eps_;
  BackwardScratch* scratch_;
  // Parameter offsets inside the layer's range, in layout order: ln_1, c_attn, attn_proj, then
  // ln_2, c_fc, mlp_proj (each weight, then bias).
  Offsets attention_, mlp_;
};

}  // namespace ds::model
