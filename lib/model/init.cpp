#include "model/init.h"

#include <cmath>
#include <cstring>

namespace ds::model {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Standard normals by Box-Muller on 53-bit uniforms: portable, unlike std::normal_distribution.
void fill_normal(float* out, int64_t n, float stddev, uint64_t state) {
  constexpr double kTwoPi = 6.283185307179586;
  for (int64_t i = 0; i < n; i += 2) {
    const double u1 = (static_cast<double>(splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    out[i] = static_cast<float>(stddev * r * std::cos(kTwoPi * u2));
    if (i + 1 < n) out[i + 1] = static_cast<float>(stddev * r * std::sin(kTwoPi * u2));
  }
}

}  // namespace

void init_weights(const ModelLayout& layout, const config::ModelConfig& model, uint64_t seed,
                  float* flat) {
  std::memset(flat, 0, sizeof(float) * layout.total);
  const float residual_std = 0.02f / std::sqrt(2.0f * static_cast<float>(model.n_layer));
  for (const ParamSpec& p : layout.params) {
    float* w = flat + p.offset;
    switch (p.init) {
      case Init::kNormal:
        fill_normal(w, p.numel, 0.02f, seed ^ hash_name(p.name));
        break;
      case Init::kResidualNormal:
        fill_normal(w, p.numel, residual_std, seed ^ hash_name(p.name));
        break;
      case Init::kOnes:
        for (int64_t i = 0; i < p.numel; ++i) w[i] = 1.0f;
        break;
      case Init::kZeros:
        break;
    }
  }
}

}  // namespace ds::model
