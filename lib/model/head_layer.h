// The head: final LayerNorm, the LM head (the token embedding itself when tied,
// as GPT-2 does) and softmax cross-entropy. Its output is the loss per position.
#pragma once

#include "model/backward_scratch.h"
#include "model/float_carver.h"
#include "model/layer.h"

namespace ds::model {

class HeadLayer : public Layer {
 public:
  HeadLayer(const LayerSpec& spec, const ModelLayout& layout, const config::ModelConfig& m,
            BackwardScratch* scratch, tensor::Ops& ops);

  bool tied() const { return tied_; }
  // With tied embeddings the LM head weight is wte, which lives in the embedding
  // layer's range: whoever runs the head says where wte and its gradient are.
  void bind_tied_embedding(const float* wte, float* dwte) {
    tied_wte_ = wte;
    tied_dwte_ = dwte;
  }

  int64_t output_size(int B, int T) const override { return int64_t{B} * T; }
  int64_t saved_size(int B, int T) const override;
  void forward(const float* weights, const MicroBatch& mb, const float* x, float* y,
               float* saved) override;
  void backward(const float* weights, float* dweights, const MicroBatch& mb, const float* x,
                const float* dy, float* dx, float* saved) override;

  // The probabilities of the last forward ([B, T, V]), in its saved region, when it ran
  // without a dloss (evaluation, sampling); nullptr after a training forward, which writes the
  // logits' gradient there instead (softmax_cross_entropy_fused).
  const float* probabilities() const { return probabilities_; }

 private:
  struct Saved {
    float *lnf, *lnf_mean, *lnf_rstd;
    float* logits;  // logits, then probabilities or (training) their gradient, in place
  };
  Saved carve(FloatCarver& region, int B, int T) const;

  int C_, V_;
  float eps_;
  bool tied_;
  bool rms_;  // Llama's RMSNorm instead of GPT-2's LayerNorm
  BackwardScratch* scratch_;
  int64_t lnf_w_, lnf_b_ = -1, lm_head_ = -1;
  const float* tied_wte_ = nullptr;
  float* tied_dwte_ = nullptr;
  const float* probabilities_ = nullptr;
};

}  // namespace ds::model
