// Cuts one float region into a layer's saved activations. The same walk with no
// region counts the floats, so a layer states its size and its layout in one place.
#pragma once

#include <cstdint>

namespace ds::model {

class FloatCarver {
 public:
  // `base` may be nullptr: then take() returns nullptr and only used() counts.
  explicit FloatCarver(float* base) : base_(base) {}

  float* take(int64_t floats) {
    float* p = base_ ? base_ + used_ : nullptr;
    // Every piece starts 64 bytes apart from the region's (aligned) start, so the
    // kernels' vector loads stay aligned.
    used_ += (floats + kAlign - 1) / kAlign * kAlign;
    return p;
  }
  int64_t used() const { return used_; }

 private:
  static constexpr int64_t kAlign = 16;
  float* base_;
  int64_t used_ = 0;
};

}  // namespace ds::model
