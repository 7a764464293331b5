#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <span>
#include <vector>

#include "optim/grad_clip.h"

using ds::optim::clip_coefficient;

TEST_CASE("clip coefficient follows DeepSpeed", "[clip]") {
  // max_norm / (norm + 1e-6), applied only when below 1
  CHECK(clip_coefficient(2.0, 1.0) == 1.0 / (2.0 + 1e-6));
  CHECK(clip_coefficient(0.5, 1.0) == 1.0);
  // norm == max_norm still clips by 1/(1 + 1e-6), as DeepSpeed does
  CHECK(clip_coefficient(1.0, 1.0) == 1.0 / (1.0 + 1e-6));
  CHECK(clip_coefficient(0.0, 1.0) == 1.0);
  CHECK(clip_coefficient(100.0, 0.0) == 1.0);  // gradient_clipping 0: off
}

TEST_CASE("global norm over several arrays", "[clip]") {
  const std::vector<float> a = {3.0f, 0.0f}, b = {4.0f}, c = {12.0f};
  const std::vector<std::span<const float>> arrays = {a, b, c};
  CHECK(ds::optim::global_norm(arrays) == 13.0);  // sqrt(9 + 16 + 144)
  CHECK(ds::optim::global_norm({}) == 0.0);
}

TEST_CASE("sum of squares is exact in double and independent of threads", "[clip]") {
  std::vector<float> x(100'003);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i)) * 1e-3f;
  double naive = 0;
  for (float v : x) naive += static_cast<double>(v) * v;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = ds::optim::sum_of_squares(x.data(), static_cast<int64_t>(x.size()));
  omp_set_num_threads(3);
  const double three = ds::optim::sum_of_squares(x.data(), static_cast<int64_t>(x.size()));
  omp_set_num_threads(threads);
  CHECK(one == three);
  CHECK(one == Approx(naive).epsilon(1e-12));
}

TEST_CASE("scale_in_place multiplies by the coefficient", "[clip]") {
  std::vector<float> g = {2.0f, -4.0f};
  ds::optim::scale_in_place(g.data(), 2, 0.5);
  CHECK(g == std::vector<float>{1.0f, -2.0f});
}
