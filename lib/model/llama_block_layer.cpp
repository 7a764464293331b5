#include "model/llama_block_layer.h"

#include <cmath>
#include <cstring>
#include <numbers>

#include "model/rope.h"
#include "tensor/cpu/kernels.h"
#include "tensor/cpu/llama_kernels.h"

namespace ds::model {

namespace cpu = tensor::cpu;
using Layout = tensor::cpu::WeightLayout;

LlamaBlockLayer::LlamaBlockLayer(const LayerSpec& spec, const ModelLayout& layout,
                                 const config::ModelConfig& m, BackwardScratch* scratch)
    : Layer(spec),
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
  s.att = region.take(int64_t{B} * NH_ * T * T);
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
  cos_.assign(static_cast<size_t>(T) * half, 0.0f);
  sin_.assign(static_cast<size_t>(T) * half, 0.0f);
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < half; ++i) {
      // As Hugging Face: the angle in fp32 (t * inv_freq), then cos and sin of it.
      const float angle = static_cast<float>(t) * static_cast<float>(inv_freq[i]);
      cos_[size_t(t) * half + i] = std::cos(angle);
      sin_[size_t(t) * half + i] = std::sin(angle);
    }
  }
  rope_T_ = T;
}

void LlamaBlockLayer::expand_heads(float* qkv, const float* proj, int N) const {
  const int64_t C = C_, KV = int64_t{KVH_} * hs_;
  const float* q = proj;
  const float* k = q + int64_t{N} * C;
  const float* v = k + int64_t{N} * KV;
  const int group = NH_ / KVH_;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    float* row = qkv + int64_t{n} * 3 * C;
    std::memcpy(row, q + n * C, sizeof(float) * C);
    for (int h = 0; h < NH_; ++h) {
      const int64_t from = n * KV + int64_t{h / group} * hs_;
      std::memcpy(row + C + int64_t{h} * hs_, k + from, sizeof(float) * hs_);
      std::memcpy(row + 2 * C + int64_t{h} * hs_, v + from, sizeof(float) * hs_);
    }
  }
}

void LlamaBlockLayer::reduce_heads(float* proj, const float* dqkv, int N) const {
  const int64_t C = C_, KV = int64_t{KVH_} * hs_;
  float* dq = proj;
  float* dk = dq + int64_t{N} * C;
  float* dv = dk + int64_t{N} * KV;
  const int group = NH_ / KVH_;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* row = dqkv + int64_t{n} * 3 * C;
    std::memcpy(dq + n * C, row, sizeof(float) * C);
    for (int kvh = 0; kvh < KVH_; ++kvh) {
      float* k_out = dk + n * KV + int64_t{kvh} * hs_;
      float* v_out = dv + n * KV + int64_t{kvh} * hs_;
      std::memset(k_out, 0, sizeof(float) * hs_);
      std::memset(v_out, 0, sizeof(float) * hs_);
      for (int h = kvh * group; h < (kvh + 1) * group; ++h) {  // in head order
        const float* k_in = row + C + int64_t{h} * hs_;
        const float* v_in = row + 2 * C + int64_t{h} * hs_;
        for (int i = 0; i < hs_; ++i) {
          k_out[i] += k_in[i];
          v_out[i] += v_in[i];
        }
      }
    }
  }
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

  cpu::rmsnorm_forward(s.n1, s.rstd1, x, w + ln1_, N, C, eps_);
  cpu::matmul_forward(q, s.n1, w + q_, nullptr, N, C, C, Layout::kOutIn);
  cpu::matmul_forward(k, s.n1, w + k_, nullptr, N, C, KV, Layout::kOutIn);
  cpu::matmul_forward(v, s.n1, w + v_, nullptr, N, C, KV, Layout::kOutIn);
  cpu::rope_forward(q, cos_.data(), sin_.data(), N, mb.T, NH_, hs_, C);
  cpu::rope_forward(k, cos_.data(), sin_.data(), N, mb.T, KVH_, hs_, KV);
  expand_heads(s.qkv, proj, N);
  cpu::attention_forward(s.atty, s.att, s.qkv, mb.B, mb.T, C, NH_);
  cpu::matmul_forward(y, s.atty, w + o_, nullptr, N, C, C, Layout::kOutIn);
  cpu::residual_forward(s.res, x, y, NC);
  cpu::rmsnorm_forward(s.n2, s.rstd2, s.res, w + ln2_, N, C, eps_);
  cpu::matmul_forward(s.gate, s.n2, w + gate_, nullptr, N, C, M_, Layout::kOutIn);
  cpu::matmul_forward(s.up, s.n2, w + up_, nullptr, N, C, M_, Layout::kOutIn);
  float* act = scratch_->d_gelu.as<float>();
  cpu::swiglu_forward(act, s.gate, s.up, int64_t{N} * M_);
  cpu::matmul_forward(y, act, w + down_, nullptr, N, M_, C, Layout::kOutIn);
  cpu::residual_forward(y, s.res, y, NC);
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
  float* d_act = t.d_fch.as<float>();  // then the gate's gradient, in place
  float* act = t.d_gelu.as<float>();   // then the up projection's gradient
  float* d_atty = t.d_atty.as<float>();
  float* d_qkv = t.d_qkv.as<float>();
  float* d_proj = t.d_proj.as<float>();

  // MLP branch: y = h + down(silu(gate) * up).
  std::memcpy(d_res, dy, sizeof(float) * NC);
  cpu::swiglu_forward(act, s.gate, s.up, NM);  // recomputed rather than kept per slot
  cpu::fill_zero(d_act, NM);
  cpu::matmul_backward(d_act, dw + down_, nullptr, dy, act, w + down_, N, M_, C, Layout::kOutIn);
  cpu::swiglu_backward(d_act, act, d_act, s.gate, s.up, NM);
  cpu::fill_zero(d_ln, NC);
  cpu::matmul_backward(d_ln, dw + gate_, nullptr, d_act, s.n2, w + gate_, N, C, M_, Layout::kOutIn);
  cpu::matmul_backward(d_ln, dw + up_, nullptr, act, s.n2, w + up_, N, C, M_, Layout::kOutIn);
  cpu::rmsnorm_backward(d_res, dw + ln2_, d_ln, s.res, w + ln2_, s.rstd2, N, C);

  // Attention branch: h = x + o(attention(...)).
  cpu::add_inplace(dx, d_res, NC);
  cpu::fill_zero(d_atty, NC);
  cpu::matmul_backward(d_atty, dw + o_, nullptr, d_res, s.atty, w + o_, N, C, C, Layout::kOutIn);
  cpu::fill_zero(d_qkv, NC * 3);
  cpu::attention_backward(d_qkv, t.d_att.as<float>(), d_atty, s.qkv, s.att, mb.B, mb.T, C, NH_);
  reduce_heads(d_proj, d_qkv, N);
  float* dq = d_proj;
  float* dk = dq + NC;
  float* dv = dk + int64_t{N} * KV;
  cpu::rope_backward(dq, cos_.data(), sin_.data(), N, mb.T, NH_, hs_, C);
  cpu::rope_backward(dk, cos_.data(), sin_.data(), N, mb.T, KVH_, hs_, KV);
  cpu::fill_zero(d_ln, NC);
  cpu::matmul_backward(d_ln, dw + q_, nullptr, dq, s.n1, w + q_, N, C, C, Layout::kOutIn);
  cpu::matmul_backward(d_ln, dw + k_, nullptr, dk, s.n1, w + k_, N, C, KV, Layout::kOutIn);
  cpu::matmul_backward(d_ln, dw + v_, nullptr, dv, s.n1, w + v_, N, C, KV, Layout::kOutIn);
  cpu::rmsnorm_backward(dx, dw + ln1_, d_ln, x, w + ln1_, s.rstd1, N, C);
}

}  // namespace ds::model
