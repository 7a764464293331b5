#include "model/block_layer.h"

#include <cstring>

#include "tensor/cpu/kernels.h"

namespace ds::model {

namespace cpu = tensor::cpu;
using tensor::Buffer;
using tensor::MemoryCategory;
using Layout = tensor::cpu::WeightLayout;

namespace {

void ensure(Buffer& b, int64_t floats, MemoryCategory category) {
  const size_t bytes = sizeof(float) * static_cast<size_t>(floats);
  if (b.size() < bytes) b = Buffer(bytes, category);
}

void zero_floats(Buffer& b, int64_t floats) {
  std::memset(b.data(), 0, sizeof(float) * static_cast<size_t>(floats));
}

}  // namespace

void BlockScratch::reserve(int64_t BT, int64_t C, int64_t NH, int64_t T) {
  const auto kind = MemoryCategory::kActivations;
  ensure(d_res, BT * C, kind);
  ensure(d_ln, BT * C, kind);
  ensure(d_atty, BT * C, kind);
  ensure(d_qkv, BT * 3 * C, kind);
  ensure(d_att, BT / T * NH * T * T, kind);
  ensure(d_fch, BT * 4 * C, kind);
  ensure(d_gelu, BT * 4 * C, kind);
}

BlockLayer::BlockLayer(const LayerSpec& spec, const ModelLayout& layout,
                       const config::ModelConfig& m, BlockScratch* scratch)
    : Layer(spec),
      C_(static_cast<int>(m.n_embd)),
      NH_(static_cast<int>(m.n_head)),
      eps_(static_cast<float>(m.layer_norm_epsilon)),
      scratch_(scratch) {
  int64_t* offsets[] = {&ln1_w_, &ln1_b_, &attn_w_, &attn_b_, &proj_w_,    &proj_b_,
                        &ln2_w_, &ln2_b_, &fc_w_,   &fc_b_,   &fc_proj_w_, &fc_proj_b_};
  for (int i = 0; i < 12; ++i) *offsets[i] = local_offset(layout, i);
}

void BlockLayer::reserve(int B, int T) {
  const int64_t BT = int64_t{B} * T, C = C_;
  const auto kind = MemoryCategory::kActivations;
  ensure(ln1_, BT * C, kind);
  ensure(ln1_mean_, BT, kind);
  ensure(ln1_rstd_, BT, kind);
  ensure(qkv_, BT * 3 * C, kind);
  ensure(att_, int64_t{B} * NH_ * T * T, kind);
  ensure(atty_, BT * C, kind);
  ensure(res_, BT * C, kind);
  ensure(ln2_, BT * C, kind);
  ensure(ln2_mean_, BT, kind);
  ensure(ln2_rstd_, BT, kind);
  ensure(fch_, BT * 4 * C, kind);
  ensure(fch_gelu_, BT * 4 * C, kind);
  scratch_->reserve(BT, C, NH_, T);
}

void BlockLayer::forward(const float* w, const MicroBatch& mb, const float* x, float* y) {
  const int N = mb.B * mb.T, C = C_;
  float* ln1 = ln1_.as<float>();
  float* qkv = qkv_.as<float>();
  float* atty = atty_.as<float>();
  float* res = res_.as<float>();
  float* ln2 = ln2_.as<float>();
  float* fch = fch_.as<float>();
  float* fch_gelu = fch_gelu_.as<float>();

  cpu::layernorm_forward(ln1, ln1_mean_.as<float>(), ln1_rstd_.as<float>(), x, w + ln1_w_,
                         w + ln1_b_, N, C, eps_);
  cpu::matmul_forward(qkv, ln1, w + attn_w_, w + attn_b_, N, C, 3 * C, Layout::kInOut);
  cpu::attention_forward(atty, att_.as<float>(), qkv, mb.B, mb.T, C, NH_);
  // The attention projection goes to y first, then y = x + y is the residual h.
  cpu::matmul_forward(y, atty, w + proj_w_, w + proj_b_, N, C, C, Layout::kInOut);
  cpu::residual_forward(res, x, y, int64_t{N} * C);
  cpu::layernorm_forward(ln2, ln2_mean_.as<float>(), ln2_rstd_.as<float>(), res, w + ln2_w_,
                         w + ln2_b_, N, C, eps_);
  cpu::matmul_forward(fch, ln2, w + fc_w_, w + fc_b_, N, C, 4 * C, Layout::kInOut);
  cpu::gelu_forward(fch_gelu, fch, int64_t{N} * 4 * C);
  cpu::matmul_forward(y, fch_gelu, w + fc_proj_w_, w + fc_proj_b_, N, 4 * C, C, Layout::kInOut);
  cpu::residual_forward(y, res, y, int64_t{N} * C);
}

void BlockLayer::backward(const float* w, float* dw, const MicroBatch& mb, const float* x,
                          const float* dy, float* dx) {
  const int N = mb.B * mb.T, C = C_;
  const int64_t NC = int64_t{N} * C;
  BlockScratch& s = *scratch_;
  float* d_res = s.d_res.as<float>();
  float* d_ln = s.d_ln.as<float>();
  float* d_gelu = s.d_gelu.as<float>();
  float* d_fch = s.d_fch.as<float>();
  float* d_atty = s.d_atty.as<float>();
  float* d_qkv = s.d_qkv.as<float>();

  // MLP branch: y = h + mlp(h).
  std::memcpy(d_res, dy, sizeof(float) * NC);
  zero_floats(s.d_gelu, int64_t{N} * 4 * C);
  cpu::matmul_backward(d_gelu, dw + fc_proj_w_, dw + fc_proj_b_, dy, fch_gelu_.as<float>(),
                       w + fc_proj_w_, N, 4 * C, C, Layout::kInOut);
  zero_floats(s.d_fch, int64_t{N} * 4 * C);
  cpu::gelu_backward(d_fch, fch_.as<float>(), d_gelu, int64_t{N} * 4 * C);
  zero_floats(s.d_ln, NC);
  cpu::matmul_backward(d_ln, dw + fc_w_, dw + fc_b_, d_fch, ln2_.as<float>(), w + fc_w_, N, C,
                       4 * C, Layout::kInOut);
  cpu::layernorm_backward(d_res, dw + ln2_w_, dw + ln2_b_, d_ln, res_.as<float>(), w + ln2_w_,
                          ln2_mean_.as<float>(), ln2_rstd_.as<float>(), N, C);

  // Attention branch: h = x + attn(x).
  cpu::add_inplace(dx, d_res, NC);
  zero_floats(s.d_atty, NC);
  cpu::matmul_backward(d_atty, dw + proj_w_, dw + proj_b_, d_res, atty_.as<float>(), w + proj_w_, N,
                       C, C, Layout::kInOut);
  zero_floats(s.d_qkv, NC * 3);
  cpu::attention_backward(d_qkv, s.d_att.as<float>(), d_atty, qkv_.as<float>(), att_.as<float>(),
                          mb.B, mb.T, C, NH_);
  zero_floats(s.d_ln, NC);
  cpu::matmul_backward(d_ln, dw + attn_w_, dw + attn_b_, d_qkv, ln1_.as<float>(), w + attn_w_, N, C,
                       3 * C, Layout::kInOut);
  cpu::layernorm_backward(dx, dw + ln1_w_, dw + ln1_b_, d_ln, x, w + ln1_w_, ln1_mean_.as<float>(),
                          ln1_rstd_.as<float>(), N, C);
}

}  // namespace ds::model
