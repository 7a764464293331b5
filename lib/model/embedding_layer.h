// Token + position embedding: y[b,t] = wte[token] + wpe[t] (GPT-2), or the token
// embedding alone when the layer has no wpe (Llama, whose positions are rotary).
#pragma once

#include "model/layer.h"

namespace ds::model {

class EmbeddingLayer : public Layer {
 public:
  EmbeddingLayer(const LayerSpec& spec, const ModelLayout& layout, const config::ModelConfig& m,
                 tensor::Ops& ops);

  int64_t output_size(int B, int T) const override { return int64_t{B} * T * C_; }
  int64_t saved_size(int, int) const override { return 0; }  // the backward reads the tokens
  void forward(const float* weights, const MicroBatch& mb, const float* x, float* y,
               float* saved) override;
  void backward(const float* weights, float* dweights, const MicroBatch& mb, const float* x,
                const float* dy, float* dx, float* saved) override;

  int64_t wte_offset() const { return wte_; }  // for the tied LM head

 private:
  int C_;
  int64_t wte_, wpe_;
};

}  // namespace ds::model
