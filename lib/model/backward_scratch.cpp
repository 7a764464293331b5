#include "model/backward_scratch.h"

namespace ds::model {

using tensor::Buffer;
using tensor::MemoryCategory;

void BackwardScratch::reserve(int B, int T, const config::ModelConfig& m,
                              int64_t attention_scratch_floats) {
  const auto ensure = [&](Buffer& b, int64_t floats) {
    tensor::grow_floats(b, floats, MemoryCategory::kActivations, device);
  };
  const int64_t BT = int64_t{B} * T, C = m.n_embd, M = m.mlp_width();
  ensure(d_ln, BT * C);
  ensure(d_atty, BT * C);
  ensure(d_qkv, BT * 3 * C);
  ensure(d_att, attention_scratch_floats);
  ensure(d_fch, BT * M);
  if (m.llama()) {
    ensure(d_res, BT * C);
    ensure(swiglu_act, BT * M);
    ensure(d_proj, BT * 3 * C);
  }
}

int64_t BackwardScratch::bytes() const {
  return static_cast<int64_t>(d_res.size() + d_ln.size() + d_atty.size() + d_qkv.size() +
                              d_att.size() + d_fch.size() + swiglu_act.size() + d_proj.size());
}

}  // namespace ds::model
