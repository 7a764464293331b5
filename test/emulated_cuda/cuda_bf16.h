// The emulation's bf16 (see cuda_runtime.h here): the upper 16 bits of an fp32, rounded to
// nearest even as __float2bfloat16 rounds on a GPU.
#pragma once

#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  uint16_t bits;
};

inline __nv_bfloat16 __float2bfloat16(float value) {
  uint32_t u;
  std::memcpy(&u, &value, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {0x7fc0};  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<uint16_t>(u >> 16)};
}

inline __nv_bfloat16 __float2bfloat16_rn(float value) { return __float2bfloat16(value); }

inline float __bfloat162float(__nv_bfloat16 value) {
  const uint32_t u = uint32_t{value.bits} << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
