// Random inputs and the normalised error every parity test (a GPU's ops, or emulated kernels,
// against the CPU kernels) checks by,
//   max |got - cpu| / max |cpu|,
// after ggml's test-backend-ops (each backend against the CPU).
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace ds_parity_test {

using Vec = std::vector<float>;
using Tokens = std::vector<int32_t>;

inline Vec random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline Tokens random_tokens(size_t n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  Tokens v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// max|got - cpu| / max|cpu|; NaN where either side has a NaN, so that an output left unwritten
// in a NaN-filled buffer (or a NaN computed) fails every threshold.
inline double normalised_error(const Vec& got, const Vec& cpu) {
  double diff = 0.0;
  double scale = 0.0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double d = std::abs(double(got[i]) - double(cpu[i]));
    if (std::isnan(d)) return d;  // std::max would drop it: every comparison with NaN is false
    diff = std::max(diff, d);
    scale = std::max(scale, std::abs(double(cpu[i])));
  }
  if (scale == 0.0) return diff;  // an all-zero reference: the absolute error
  return diff / scale;
}

inline void check_parity(const std::string& what, const Vec& got, const Vec& cpu,
                         double threshold) {
  REQUIRE(got.size() == cpu.size());
  const double error = normalised_error(got, cpu);
  // scripts/gpu-check.sh sets this to collect every op's error into its summary.
  if (std::getenv("DS_PARITY_REPORT") != nullptr) {
    std::printf("parity %-45s %.3e %.0e %s\n", what.c_str(), error, threshold,
                error <= threshold ? "ok" : "FAIL");
  }
  INFO(what << ": max|got-cpu|/max|cpu| = " << error << " (threshold " << threshold << ")");
  CHECK(error <= threshold);
}

}  // namespace ds_parity_test
