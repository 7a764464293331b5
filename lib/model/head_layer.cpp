#include "model/head_layer.h"

#include <algorithm>

#include "util/error.h"

namespace ds::model {

HeadLayer::HeadLayer(const LayerSpec& spec, const ModelLayout& layout, const config::ModelConfig& m,
                     BackwardScratch* scratch, tensor::Ops& ops)
    : Layer(spec, ops),
      C_(static_cast<int>(m.n_embd)),
      V_(static_cast<int>(m.vocab_size)),
      eps_(static_cast<float>(m.layer_norm_epsilon)),
      tied_(m.tie_embeddings),
      rms_(m.llama()),
      scratch_(scratch),
      lnf_w_(local_offset(layout, 0)) {
  // GPT-2: ln_f weight and bias, then lm_head; Llama: the RMSNorm weight, then lm_head.
  int next = 1;
  if (!rms_) lnf_b_ = local_offset(layout, next++);
  if (!tied_) lm_head_ = local_offset(layout, next);
}

HeadLayer::Saved HeadLayer::carve(FloatCarver& region, int B, int T) const {
  const int64_t BT = int64_t{B} * T;
  Saved s{};
  s.lnf = region.take(BT * C_);
  s.lnf_mean = region.take(BT);
  s.lnf_rstd = region.take(BT);
  // The training step's classifier scratch, or an evaluation's logits and probabilities.
  s.logits =
      region.take(std::max(BT * V_, ops_.classifier_scratch_floats(static_cast<int>(BT), V_)));
  return s;
}

int64_t HeadLayer::saved_size(int B, int T) const {
  FloatCarver counter(nullptr);
  carve(counter, B, T);
  return counter.used();
}

void HeadLayer::forward(const float* w, const MicroBatch& mb, const float* x, float* y,
                        float* saved) {
  const int N = mb.B * mb.T;
  const float* head = tied_ ? tied_wte_ : w + lm_head_;
  DS_CHECK(head != nullptr, "the tied LM head ran before bind_tied_embedding()");
  FloatCarver region(saved);
  const Saved s = carve(region, mb.B, mb.T);
  if (rms_) {
    ops_.rmsnorm_forward(s.lnf, s.lnf_rstd, x, w + lnf_w_, N, C_, eps_);
  } else {
    ops_.layernorm_forward(s.lnf, s.lnf_mean, s.lnf_rstd, x, w + lnf_w_, w + lnf_b_, N, C_, eps_);
  }
  if (mb.dloss != 0.0f) {
    // Training: the backward's dlogits come out of the same pass as the losses.
    ops_.classifier_forward(y, s.logits, s.lnf, head, mb.targets, mb.dloss, N, C_, V_);
    probabilities_ = nullptr;
  } else {
    ops_.matmul_forward(s.logits, s.lnf, head, nullptr, N, C_, V_, tensor::WeightLayout::kOutIn);
    ops_.softmax_cross_entropy_forward(y, s.logits, s.logits, mb.targets, N, V_);
    probabilities_ = s.logits;
  }
}

void HeadLayer::backward(const float* w, float* dw, const MicroBatch& mb, const float* x,
                         const float*, float* dx, float* saved) {
  const int N = mb.B * mb.T;
  const float* head = tied_ ? tied_wte_ : w + lm_head_;
  float* dhead = tied_ ? tied_dwte_ : dw + lm_head_;
  DS_CHECK(head != nullptr && dhead != nullptr,
           "the tied LM head ran before bind_tied_embedding()");
  FloatCarver region(saved);
  const Saved s = carve(region, mb.B, mb.T);
  float* d_lnf = scratch_->d_ln.as<float>();
  ops_.fill_zero(d_lnf, int64_t{N} * C_);
  // The forward left the logits' gradient in the classifier's scratch. After an evaluation
  // forward (dloss 0: every target ignored) the gradient is zero, so the head adds nothing to
  // dhead and d_lnf stays zero; multiplying the zeros would cost the step's largest GEMMs and,
  // on a GPU, bf16 copies of [N, V].
  if (mb.dloss != 0.0f) ops_.classifier_backward(d_lnf, dhead, s.logits, s.lnf, head, N, C_, V_);
  ops_.fill_zero(dx, int64_t{N} * C_);  // the norms' backwards add to their input gradient
  if (rms_) {
    ops_.rmsnorm_backward(dx, dw + lnf_w_, d_lnf, x, w + lnf_w_, s.lnf_rstd, N, C_);
  } else {
    ops_.layernorm_backward(dx, dw + lnf_w_, dw + lnf_b_, d_lnf, x, w + lnf_w_, s.lnf_mean,
                            s.lnf_rstd, N, C_);
  }
}

}  // namespace ds::model
