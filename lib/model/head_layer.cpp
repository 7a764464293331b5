#include "model/head_layer.h"

#include <cstring>

#include "tensor/cpu/kernels.h"
#include "util/error.h"

namespace ds::model {

namespace cpu = tensor::cpu;
using tensor::Buffer;
using tensor::MemoryCategory;

HeadLayer::HeadLayer(const LayerSpec& spec, const ModelLayout& layout, const config::ModelConfig& m)
    : Layer(spec),
      C_(static_cast<int>(m.n_embd)),
      V_(static_cast<int>(m.vocab_size)),
      eps_(static_cast<float>(m.layer_norm_epsilon)),
      tied_(m.tie_embeddings),
      lnf_w_(local_offset(layout, 0)),
      lnf_b_(local_offset(layout, 1)) {
  if (!tied_) lm_head_ = local_offset(layout, 2);
}

void HeadLayer::reserve(int B, int T) {
  const int64_t BT = int64_t{B} * T;
  auto ensure = [](Buffer& b, int64_t floats) {
    if (b.size() < sizeof(float) * floats)
      b = Buffer(sizeof(float) * floats, MemoryCategory::kActivations);
  };
  ensure(lnf_, BT * C_);
  ensure(lnf_mean_, BT);
  ensure(lnf_rstd_, BT);
  ensure(logits_, BT * V_);  // logits, then probabilities, then their gradient, in place
  ensure(d_lnf_, BT * C_);
}

void HeadLayer::forward(const float* w, const MicroBatch& mb, const float* x, float* y) {
  const int N = mb.B * mb.T;
  const float* head = tied_ ? tied_wte_ : w + lm_head_;
  DS_CHECK(head != nullptr, "the tied LM head ran before bind_tied_embedding()");
  float* lnf = lnf_.as<float>();
  float* logits = logits_.as<float>();
  cpu::layernorm_forward(lnf, lnf_mean_.as<float>(), lnf_rstd_.as<float>(), x, w + lnf_w_,
                         w + lnf_b_, N, C_, eps_);
  cpu::matmul_forward(logits, lnf, head, nullptr, N, C_, V_, cpu::WeightLayout::kOutIn);
  cpu::softmax_cross_entropy_forward(y, logits, logits, mb.targets, N, V_);
}

void HeadLayer::backward(const float* w, float* dw, const MicroBatch& mb, const float* x,
                         const float*, float* dx) {
  const int N = mb.B * mb.T;
  const float* head = tied_ ? tied_wte_ : w + lm_head_;
  float* dhead = tied_ ? tied_dwte_ : dw + lm_head_;
  DS_CHECK(head != nullptr && dhead != nullptr,
           "the tied LM head ran before bind_tied_embedding()");
  float* dlogits = logits_.as<float>();
  cpu::softmax_cross_entropy_backward(dlogits, dlogits, mb.targets, mb.dloss, N, V_);
  float* d_lnf = d_lnf_.as<float>();
  std::memset(d_lnf, 0, sizeof(float) * int64_t{N} * C_);
  cpu::matmul_backward(d_lnf, dhead, nullptr, dlogits, lnf_.as<float>(), head, N, C_, V_,
                       cpu::WeightLayout::kOutIn);
  cpu::layernorm_backward(dx, dw + lnf_w_, dw + lnf_b_, d_lnf, x, w + lnf_w_, lnf_mean_.as<float>(),
                          lnf_rstd_.as<float>(), N, C_);
}

}  // namespace ds::model
