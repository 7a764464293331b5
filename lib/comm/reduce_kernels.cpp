#include "comm/reduce_kernels.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ds::comm {
namespace {

using tensor::DType;

// Small enough to stay in L1 while every input is folded into it.
constexpr size_t kBlock = 2048;

#if defined(__x86_64__)
// F16C converts 8 halves per instruction with the same round-to-nearest-even as the
// software path; picked at run time so the build needs no -march.
__attribute__((target("avx2,f16c"))) void widen_f16_fast(float* dst, const uint16_t* src,
                                                         size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = tensor::f16_to_f32(src[i]);
}

__attribute__((target("avx2,f16c"))) void narrow_f16_fast(uint16_t* dst, const float* src,
                                                          size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = tensor::f32_to_f16(src[i]);
}

bool have_f16c() {
  static const bool yes = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2");
  return yes;
}
#endif

void widen_f16(float* dst, const uint16_t* src, size_t n) {
#if defined(__x86_64__)
  if (have_f16c()) return widen_f16_fast(dst, src, n);
#endif
  for (size_t i = 0; i < n; ++i) dst[i] = tensor::f16_to_f32(src[i]);
}

void narrow_f16(uint16_t* dst, const float* src, size_t n) {
#if defined(__x86_64__)
  if (have_f16c()) return narrow_f16_fast(dst, src, n);
#endif
  for (size_t i = 0; i < n; ++i) dst[i] = tensor::f32_to_f16(src[i]);
}

void add_into(float* __restrict acc, const float* __restrict x, size_t n) {
  for (size_t i = 0; i < n; ++i) acc[i] += x[i];
}

void max_into(float* __restrict acc, const float* __restrict x, size_t n) {
  // NaN propagates, as in NCCL and PyTorch: a NaN gradient must not vanish in a max.
  for (size_t i = 0; i < n; ++i) acc[i] = (x[i] > acc[i] || x[i] != x[i]) ? x[i] : acc[i];
}

void combine(float* acc, const float* x, size_t n, ReduceOp op) {
  if (op == ReduceOp::kMax) {
    max_into(acc, x, n);
  } else {
    add_into(acc, x, n);
  }
}

}  // namespace

void widen_to_f32(float* dst, const void* src, size_t count, DType dtype) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kBF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = tensor::bf16_to_f32(s[i]);
      return;
    }
    case DType::kF16:
      widen_f16(dst, static_cast<const uint16_t*>(src), count);
      return;
  }
}

void narrow_from_f32(void* dst, const float* src, size_t count, DType dtype) {
  switch (dtype) {
    case DType::kF32:
      std::memmove(dst, src, count * sizeof(float));
      return;
    case DType::kBF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < count; ++i) d[i] = tensor::f32_to_bf16(src[i]);
      return;
    }
    case DType::kF16:
      narrow_f16(static_cast<uint16_t*>(dst), src, count);
      return;
  }
}

void reduce_inputs(void* dst, const void* const* inputs, int n, size_t count, DType dtype,
                   ReduceOp op, int divisor) {
  const size_t esize = tensor::dtype_size(dtype);
  alignas(64) float acc[kBlock];
  alignas(64) float tmp[kBlock];
  for (size_t begin = 0; begin < count; begin += kBlock) {
    const size_t len = std::min(kBlock, count - begin);
    auto at = [&](const void* p) { return static_cast<const char*>(p) + begin * esize; };
    if (dtype == DType::kF32) {
      // fp32 inputs fold straight from memory; no widening copy.
      std::memcpy(acc, at(inputs[0]), len * sizeof(float));
      for (int j = 1; j < n; ++j) {
        combine(acc, reinterpret_cast<const float*>(at(inputs[j])), len, op);
      }
    } else {
      widen_to_f32(acc, at(inputs[0]), len, dtype);
      for (int j = 1; j < n; ++j) {
        widen_to_f32(tmp, at(inputs[j]), len, dtype);
        combine(acc, tmp, len, op);
      }
    }
    if (op == ReduceOp::kAvg) {
      // Divide rather than multiply by 1/n: matches torch's avg bit for bit.
      for (size_t i = 0; i < len; ++i) acc[i] = acc[i] / static_cast<float>(divisor);
    }
    narrow_from_f32(static_cast<char*>(dst) + begin * esize, acc, len, dtype);
  }
}

}  // namespace ds::comm
