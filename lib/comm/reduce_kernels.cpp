#include "comm/reduce_kernels.h"

#include <algorithm>
#include <bit>
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

// bf16 is the upper half of an f32: widening is a shift; narrowing rounds to nearest even
// and keeps NaN a quiet NaN, exactly as tensor::f32_to_bf16 does, 8 values at a time.
__attribute__((target("avx2"))) void widen_bf16_fast(float* dst, const uint16_t* src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
  }
  for (; i < n; ++i) dst[i] = tensor::bf16_to_f32(src[i]);
}

__attribute__((target("avx2"))) void narrow_bf16_fast(uint16_t* dst, const float* src, size_t n) {
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i bias = _mm256_set1_epi32(0x7fff);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf = _mm256_set1_epi32(0x7f800000);
  const __m256i quiet = _mm256_set1_epi32(0x40);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i bits = _mm256_castps_si256(_mm256_loadu_ps(src + i));
    const __m256i high = _mm256_srli_epi32(bits, 16);
    const __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(bits, _mm256_add_epi32(bias, _mm256_and_si256(high, one))), 16);
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, abs_mask), inf);
    const __m256i result = _mm256_blendv_epi8(rounded, _mm256_or_si256(high, quiet), is_nan);
    // Pack 8 x 32-bit (each <= 0xffff) to 8 x 16-bit; packus works per 128-bit lane.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(result, result), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) dst[i] = tensor::f32_to_bf16(src[i]);
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

// Portable bf16 <-> f32 with the same results as tensor::f32_to_bf16 / bf16_to_f32.
void widen_bf16(float* __restrict dst, const uint16_t* __restrict src, size_t n) {
#if defined(__x86_64__)
  if (have_f16c()) return widen_bf16_fast(dst, src, n);
#endif
  for (size_t i = 0; i < n; ++i) dst[i] = std::bit_cast<float>(static_cast<uint32_t>(src[i]) << 16);
}

void narrow_bf16(uint16_t* __restrict dst, const float* __restrict src, size_t n) {
#if defined(__x86_64__)
  if (have_f16c()) return narrow_bf16_fast(dst, src, n);
#endif
  for (size_t i = 0; i < n; ++i) {
    const uint32_t bits = std::bit_cast<uint32_t>(src[i]);
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (bits >> 16) | 0x40u;
    dst[i] = static_cast<uint16_t>((bits & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
  }
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
    case DType::kBF16:
      widen_bf16(dst, static_cast<const uint16_t*>(src), count);
      return;
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
    case DType::kBF16:
      narrow_bf16(static_cast<uint16_t*>(dst), src, count);
      return;
    case DType::kF16:
      narrow_f16(static_cast<uint16_t*>(dst), src, count);
      return;
  }
}

void reduce_inputs(void* dst, const void* const* inputs, int n, size_t count, DType dtype,
                   ReduceOp op, int divisor, void* dst2) {
  const size_t esize = tensor::dtype_size(dtype);
  alignas(64) float acc[kBlock];
  alignas(64) float tmp[kBlock];
  for (size_t begin = 0; begin < count; begin += kBlock) {
    const size_t len = std::min(kBlock, count - begin);
    auto at = [&](const void* p) { return static_cast<const char*>(p) + begin * esize; };
    // Accumulate one L1-sized block over every input in rank order, then store it once.
    if (dtype == DType::kF32) {
      const auto* first = reinterpret_cast<const float*>(at(inputs[0]));
      if (n == 1) {
        std::memcpy(acc, first, len * sizeof(float));
      } else {
        // The first fold reads both inputs straight from memory: no copy into acc first.
        const auto* second = reinterpret_cast<const float*>(at(inputs[1]));
        if (op == ReduceOp::kMax) {
          for (size_t i = 0; i < len; ++i) {
            acc[i] = (second[i] > first[i] || second[i] != second[i]) ? second[i] : first[i];
          }
        } else {
          for (size_t i = 0; i < len; ++i) acc[i] = first[i] + second[i];
        }
      }
      for (int j = 2; j < n; ++j) {
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
    if (dst2 != nullptr) narrow_from_f32(static_cast<char*>(dst2) + begin * esize, acc, len, dtype);
  }
}

}  // namespace ds::comm
