// Building blocks shared by the CPU kernel files (kernels.cpp, llama_kernels.cpp): thread
// shares, a vectorisable exp, and fixed-order reductions. Internal to lib/tensor/cpu.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace ds::tensor::cpu::detail {

// Element-wise loops below this size run on the calling thread: waking the pool costs more
// than the work.
constexpr int64_t kParallelMin = 1 << 14;

// A thread's share of [0, n) when threads split columns; boundaries fall on 16 floats (one cache
// line) so neighbouring threads never write the same line.
struct Range {
  int begin;
  int end;
};
inline Range column_share(int n, int thread, int threads) {
  const int lines = (n + 15) / 16;
  const int per = lines / threads;
  const int extra = lines % threads;
  const int first = thread * per + std::min(thread, extra);
  const int count = per + (thread < extra ? 1 : 0);
  return {std::min(n, first * 16), std::min(n, (first + count) * 16)};
}

// exp(x) for float, written so that GCC vectorises it (glibc's expf is a scalar call): range
// reduction x = n ln2 + r, |r| <= ln2/2, then Cephes' degree-6 polynomial for e^r; about 1 ulp.
// Inputs are clamped to the normal range; NaN propagates.
inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  // Round x*log2(e) to nearest with the 1.5*2^23 trick: vectorises without SSE4.1's roundps.
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  // ln2 split in two so that n*ln2_hi is exact.
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// Reductions keep kLanes independent partial sums. GCC vectorises that shape without
// -ffast-math (it may not reorder a single running sum, and `omp simd reduction` left these
// loops scalar in practice), and the order of additions is fixed by this code rather than by
// the compiler's choice of vector width.
constexpr int kLanes = 16;

template <typename Acc, typename Term>
inline Acc lane_sum(int64_t n, Term term) {
  Acc acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += term(i + l);
  }
  Acc total = 0;
  for (; i < n; ++i) total += term(i);
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  return total;
}

}  // namespace ds::tensor::cpu::detail
