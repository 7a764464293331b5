#include "model/llama_block_layer.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "model/rope.h"

namespace ds::model {

using Layout = tensor::WeightLayout;

LlamaBlockLayer::LlamaBlockLayer(const LayerSpec& spec, const ModelLayout& layout,
                                 const config::ModelConfig& m, BackwardScratch* scratch,
                                 tensor::Ops& ops)
    : Layer(spec, ops),
      C_(static_cast<int>(m.n_embd)),
      NH_(static_cast<int>(m.n_head)),
      KVH_(static_cast<int>(m.kv_heads())),
      hs_(static_cast<int>(m.n_embd / m.n_head)),
      M_(static_cast<int>(m.mlp_width())),
      eps_(static_cast<float>(m.layer_norm_epsilon)),
      theta_(m.rope_theta),
      scaling_(m.rope_scaling),
      scratch_(scratch) {
  int64_t* offsets[] = {&ln1_, &q_, &k_, &v_, &o_, &ln2_, &gate_, &up_, &down_};
  for (int i = 0; i < 9; ++i) *offsets[i] = local_offset(layout, i);
}

LlamaBlockLayer::Saved LlamaBlockLayer::carve(FloatCarver& region, int B, int T) const {
  const int64_t BT = int64_t{B} * T, C = C_;
  Saved s{};
  s.n1 = region.take(BT * C);
  s.rstd1 = region.take(BT);
  s.qkv = region.take(BT * 3 * C);
  s.att = region.take(ops_.attention_saved_floats(B, T, C_, NH_));
  s.atty = region.take(BT * C);
  s.res = region.take(BT * C);
  s.n2 = region.take(BT * C);
  s.rstd2 = region.take(BT);
  s.gate = region.take(BT * M_);
  s.up = region.take(BT * M_);
  return s;
}

int64_t LlamaBlockLayer::saved_size(int B, int T) const {
  FloatCarver counter(nullptr);
  carve(counter, B, T);
  return counter.used();
}

void LlamaBlockLayer::ensure_rope(int T) {
  if (T <= rope_T_) return;
  const std::vector<double> inv_freq = rope_inverse_frequencies(hs_, theta_, scaling_);
  const int half = hs_ / 2;
  std::vector<float> cos(static_cast<size_t>(T) * half), sin(cos.size());
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < half; ++i) {
      // As Hugging Face: the angle in fp32 (t * inv_freq), then cos and sin of it.
      const float angle = static_cast<float>(t) * static_cast<float>(inv_freq[i]);
      cos[size_t(t) * half + i] = std::cos(angle);
      sin[size_t(t) * half + i] = std::sin(angle);
    }
  }
  const auto keep = [&](tensor::Buffer& table, const std::vector<float>& values) {
    table = ops_.allocate_floats(static_cast<int64_t>(values.size()),
                                 tensor::MemoryCategory::kActivations);
    ops_.upload(table.data(), values.data(), sizeof(float) * values.size());
  };
  keep(cos_, cos);
  keep(sin_, sin);
  rope_T_ = T;
}

void LlamaBlockLayer::forward(const float* w, const MicroBatch& mb, const float* x, float* y,
                              float* saved) {
  const int N = mb.B * mb.T, C = C_, KV = KVH_ * hs_;
  const int64_t NC = int64_t{N} * C;
  FloatCarver region(saved);
  const Saved s = carve(region, mb.B, mb.T);
  ensure_rope(mb.T);
  float* proj = scratch_->d_proj.as<float>();  // free: no backward runs during a forward
  float* q = proj;
  float* k = q + NC;
  float* v = k + int64_t{N} * KV;

  ops_.rmsnorm_forward(s.n1, s.rstd1, x, w + ln1_, N, C, eps_);
  ops_.matmul_forward(q, s.n1, w + q_, nullptr, N, C, C, Layout::kOutIn);
  ops_.matmul_forward(k, s.n1, w + k_, nullptr, N, C, KV, Layout::kOutIn);
  ops_.matmul_forward(v, s.n1, w + v_, nullptr, N, C, KV, Layout::kOutIn);
  ops_.rope_forward(q, cos_.as<float>(), sin_.as<float>(), N, mb.T, NH_, hs_, C);
  ops_.rope_forward(k, cos_.as<float>(), sin_.as<float>(), N, mb.T, KVH_, hs_, KV);
  ops_.expand_kv_heads(s.qkv, q, k, v, N, NH_, KVH_, hs_);
  ops_.attention_forward(s.atty, s.att, s.qkv, mb.B, mb.T, C, NH_);
  ops_.matmul_forward(y, s.atty, w + o_, nullptr, N, C, C, Layout::kOutIn);
  ops_.residual_forward(s.res, x, y, NC);
  ops_.rmsnorm_forward(s.n2, s.rstd2, s.res, w + ln2_, N, C, eps_);
  ops_.matmul_forward(s.gate, s.n2, w + gate_, nullptr, N, C, M_, Layout::kOutIn);
  ops_.matmul_forward(s.up, s.n2, w + up_, nullptr, N, C, M_, Layout::kOutIn);
  float* act = scratch_->swiglu_act.as<float>();
  ops_.swiglu_forward(act, s.gate, s.up, int64_t{N} * M_);
  ops_.matmul_forward(y, act, w + down_, nullptr, N, M_, C, Layout::kOutIn);
  ops_.residual_forward(y, s.res, y, NC);
}

void LlamaBlockLayer::backward(const float* w, float* dw, const MicroBatch& mb, const float* x,
                               const float* dy, float* dx, float* saved) {
  const int N = mb.B * mb.T, C = C_, KV = KVH_ * hs_;
  const int64_t NC = int64_t{N} * C, NM = int64_t{N} * M_;
  FloatCarver region(saved);
  const Saved s = carve(region, mb.B, mb.T);
  ensure_rope(mb.T);
  BackwardScratch& t = *scratch_;
  float* d_res = t.d_res.as<float>();
  float* d_ln = t.d_ln.as<float>();
  float* d_act = t.d_fch.as<float>();     // then the gate's gradient, in place
  float* act = t.swiglu_act.as<float>();  // then the up projection's gradient
  float* d_atty = t.d_atty.as<float>();
  float* d_qkv = t.d_qkv.as<float>();
  float* d_proj = t.d_proj.as<float>();

  // MLP branch: y = h + down(silu(gate) * up).
  ops_.copy(d_res, dy, sizeof(float) * NC);
  ops_.swiglu_forward(act, s.gate, s.up, NM);  // recomputed rather than kept per slot
  ops_.fill_zero(d_act, NM);
  ops_.matmul_backward(d_act, dw + down_, nullptr, dy, act, w + down_, N, M_, C, Layout::kOutIn);
  ops_.swiglu_backward(d_act, act, d_act, s.gate, s.up, NM);
  ops_.fill_zero(d_ln, NC);
  ops_.matmul_backward(d_ln, dw + gate_, nullptr, d_act, s.n2, w + gate_, N, C, M_, Layout::kOutIn);
  ops_.matmul_backward(d_ln, dw + up_, nullptr, act, s.n2, w + up_, N, C, M_, Layout::kOutIn);
  ops_.rmsnorm_backward(d_res, dw + ln2_, d_ln, s.res, w + ln2_, s.rstd2, N, C);

  // Attention branch: h = x + o(attention(...)).
  ops_.copy(dx, d_res, sizeof(float) * NC);
  ops_.fill_zero(d_atty, NC);
  ops_.matmul_backward(d_atty, dw + o_, nullptr, d_res, s.atty, w + o_, N, C, C, Layout::kOutIn);
  ops_.fill_zero(d_qkv, NC * 3);
  ops_.attention_backward(d_qkv, t.d_att.as<float>(), d_atty, s.qkv, s.att, s.atty, mb.B, mb.T, C,
                          NH_);
  float* dq = d_proj;
  float* dk = dq + NC;
  float* dv = dk + int64_t{N} * KV;
  ops_.reduce_kv_heads(dq, dk, dv, d_qkv, N, NH_, KVH_, hs_);
  ops_.rope_backward(dq, cos_.as<float>(), sin_.as<float>(), N, mb.T, NH_, hs_, C);
  ops_.rope_backward(dk, cos_.as<float>(), sin_.as<float>(), N, mb.T, KVH_, hs_, KV);
  ops_.fill_zero(d_ln, NC);
  ops_.matmul_backward(d_ln, dw + q_, nullptr, dq, s.n1, w + q_, N, C, C, Layout::kOutIn);
  ops_.matmul_backward(d_ln, dw + k_, nullptr, dk, s.n1, w + k_, N, C, KV, Layout::kOutIn);
  ops_.matmul_backward(d_ln, dw + v_, nullptr, dv, s.n1, w + v_, N, C, KV, Layout::kOutIn);
  ops_.rmsnorm_backward(dx, dw + ln1_, d_ln, x, w + ln1_, s.rstd1, N, C);
}

}  // namespace ds::model
