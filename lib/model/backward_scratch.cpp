#include "model/backward_scratch.h"

namespace ds::model {

using tensor::Buffer;
using tensor::MemoryCategory;

namespace {

void ensure(Buffer& b, int64_t floats) {
  const size_t bytes = sizeof(float) * static_cast<size_t>(floats);
  if (b.size() < bytes) b = Buffer(bytes, MemoryCategory::kActivations);
}

}  // namespace

void BackwardScratch::reserve(int B, int T, int64_t C, int64_t NH) {
  const int64_t BT = int64_t{B} * T;
  ensure(d_res, BT * C);
  ensure(d_ln, BT * C);
  ensure(d_atty, BT * C);
  ensure(d_qkv, BT * 3 * C);
  ensure(d_att, int64_t{B} * NH * T * T);
  ensure(d_fch, BT * 4 * C);
  ensure(d_gelu, BT * 4 * C);
}

int64_t BackwardScratch::bytes() const {
  return static_cast<int64_t>(d_res.size() + d_ln.size() + d_atty.size() + d_qkv.size() +
                              d_att.size() + d_fch.size() + d_gelu.size());
}

}  // namespace ds::model
