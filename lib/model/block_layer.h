// A GPT-2 transformer block (pre-LayerNorm):
//   h = x + attn_proj(attention(c_attn(ln_1(x))))
//   y = h + mlp_proj(gelu(c_fc(ln_2(h))))
// It keeps the activations its backward needs; the gradients of its internal
// activations live in a BlockScratch shared by all blocks (one backward at a time).
#pragma once

#include "model/layer.h"
#include "tensor/memory.h"

namespace ds::model {

struct BlockScratch {
  void reserve(int64_t BT, int64_t C, int64_t NH, int64_t T);
  tensor::Buffer d_res;   // [BT, C]  gradient of h
  tensor::Buffer d_ln;    // [BT, C]  gradient of ln_1/ln_2 outputs
  tensor::Buffer d_atty;  // [BT, C]
  tensor::Buffer d_qkv;   // [BT, 3C]
  tensor::Buffer d_att;   // [B, NH, T, T]
  tensor::Buffer d_fch;   // [BT, 4C] gradient of the MLP's pre-activation
  tensor::Buffer d_gelu;  // [BT, 4C] gradient of the MLP's activation
};

class BlockLayer : public Layer {
 public:
  BlockLayer(const LayerSpec& spec, const ModelLayout& layout, const config::ModelConfig& m,
             BlockScratch* scratch);

  void reserve(int B, int T) override;
  int64_t output_size(int B, int T) const override { return int64_t{B} * T * C_; }
  void forward(const float* weights, const MicroBatch& mb, const float* x, float* y) override;
  void backward(const float* weights, float* dweights, const MicroBatch& mb, const float* x,
                const float* dy, float* dx) override;

 private:
  int C_, NH_;
  float eps_;
  BlockScratch* scratch_;
  // Parameter offsets inside the layer's range, in layout order.
  int64_t ln1_w_, ln1_b_, attn_w_, attn_b_, proj_w_, proj_b_, ln2_w_, ln2_b_, fc_w_, fc_b_,
      fc_proj_w_, fc_proj_b_;
  // Saved activations.
  tensor::Buffer ln1_, ln1_mean_, ln1_rstd_, qkv_, att_, atty_, res_, ln2_, ln2_mean_, ln2_rstd_,
      fch_, fch_gelu_;
};

}  // namespace ds::model
