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
  // The saved activations, cut from one region.
  struct Saved {
    // attention and mlp: the sublayers' own saved activations (Ops::attention_block_forward,
    // Ops::mlp_forward).
    float *ln1, *ln1_mean, *ln1_rstd, *attention, *res, *ln2, *ln2_mean, *ln2_rstd, *mlp;
  };
  Saved carve(FloatCarver& region, int B, int T) const;

  int C_, NH_;
  float eps_;
  BackwardScratch* scratch_;
  // Parameter offsets inside the layer's range, in layout order.
  int64_t ln1_w_, ln1_b_, attn_w_, attn_b_, proj_w_, proj_b_, ln2_w_, ln2_b_, fc_w_, fc_b_,
      fc_proj_w_, fc_proj_b_;
};

}  // namespace ds::model
