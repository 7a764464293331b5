// Element types: f32 for compute and master weights, bf16 and f16 for storage in
// mixed precision. Conversions round to nearest even, as the hardware does.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace ds::tensor {

enum class DType : uint8_t { kF32, kBF16, kF16 };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);  // "f32", "bf16", "f16"

inline uint16_t f32_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // keep NaN a quiet NaN
  }
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

inline float bf16_to_f32(uint16_t value) {
  const uint32_t bits = static_cast<uint32_t>(value) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

uint16_t f32_to_f16(float value);
float f16_to_f32(uint16_t value);

}  // namespace ds::tensor
