// The head: final LayerNorm, the LM head (the token embedding itself when tied,
// as GPT-2 does) and softmax cross-entropy. Its output is the loss per position.
#pragma once

#include "model/layer.h"
#include "tensor/memory.h"

namespace ds::model {

class HeadLayer : public Layer {
 public:
  HeadLayer(const LayerSpec& spec, const ModelLayout& layout, const config::ModelConfig& m);

  bool tied() const { return tied_; }
  // With tied embeddings the LM head weight is wte, which lives in the embedding
  // layer's range: whoever runs the head says where wte and its gradient are.
  void bind_tied_embedding(const float* wte, float* dwte) {
    tied_wte_ = wte;
    tied_dwte_ = dwte;
  }

  void reserve(int B, int T) override;
  int64_t output_size(int B, int T) const override { return int64_t{B} * T; }
  void forward(const float* weights, const MicroBatch& mb, const float* x, float* y) override;
  void backward(const float* weights, float* dweights, const MicroBatch& mb, const float* x,
                const float* dy, float* dx) override;

  // The logits of the last forward ([B, T, V]); overwritten by the backward.
  const float* probabilities() const { return logits_.as<float>(); }

 private:
  int C_, V_;
  float eps_;
  bool tied_;
  int64_t lnf_w_, lnf_b_, lm_head_ = -1;
  const float* tied_wte_ = nullptr;
  float* tied_dwte_ = nullptr;
  tensor::Buffer lnf_, lnf_mean_, lnf_rstd_, logits_, d_lnf_;
};

}  // namespace ds::model
