#include "optim/grad_clip.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ds::optim {
namespace {

// Block size for the deterministic reduction: large enough to amortise the threads,
// fixed so that the order of additions never depends on the thread count.
constexpr int64_t kBlock = 1 << 14;

}  // namespace

double clip_coefficient(double total_norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  const double coefficient = max_norm / (total_norm + 1e-6);
  return coefficient < 1.0 ? coefficient : 1.0;
}

double sum_of_squares(const float* x, int64_t n) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t end = std::min(n, (b + 1) * kBlock);
    double s = 0;
    for (int64_t i = b * kBlock; i < end; ++i) s += static_cast<double>(x[i]) * x[i];
    partial[static_cast<size_t>(b)] = s;
  }
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

double global_norm(std::span<const std::span<const float>> arrays) {
  double total = 0;
  for (const auto& a : arrays) total += sum_of_squares(a.data(), static_cast<int64_t>(a.size()));
  return std::sqrt(total);
}

void scale_in_place(float* x, int64_t n, double coefficient) {
  if (coefficient == 1.0) return;
  const float c = static_cast<float>(coefficient);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] *= c;
}

}  // namespace ds::optim
