#include "tensor/dtype.h"

#include <cmath>

namespace ds::tensor {

size_t dtype_size(DType dtype) { return dtype == DType::kF32 ? 4 : 2; }

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    case DType::kF16:
      return "f16";
  }
  return "?";
}

uint16_t f32_to_f16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x0200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {
    // Subnormal in f16 (or zero): scale into the subnormal range and round to even.
    float magnitude;
    std::memcpy(&magnitude, &abs, sizeof magnitude);
    const float scaled = magnitude * 16777216.0f;  // 2^24: one f16 subnormal step is 2^-24
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  const uint32_t exponent_shifted = abs - 0x38000000u;  // rebias 127 → 15
  const uint32_t rounding = 0x0fffu + ((exponent_shifted >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((exponent_shifted + rounding) >> 13));
}

float f16_to_f32(uint16_t value) {
  const uint32_t sign = static_cast<uint32_t>(value & 0x8000u) << 16;
  const uint32_t exponent = (value >> 10) & 0x1fu;
  const uint32_t mantissa = value & 0x3ffu;
  float out;
  if (exponent == 0) {
    out = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -out : out;
  }
  uint32_t bits;
  if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

}  // namespace ds::tensor
