// The emulation's f16 (see cuda_runtime.h here): the host compiler's _Float16, whose conversion
// from float rounds to nearest even (subnormals and overflow to infinity included) as
// __float2half_rn does on a GPU.
#pragma once

struct __half {
  _Float16 value;
};

inline __half __float2half_rn(float value) { return {static_cast<_Float16>(value)}; }

inline float __half2float(__half value) { return static_cast<float>(value.value); }
