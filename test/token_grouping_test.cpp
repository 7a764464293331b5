// The host side of the CUDA embedding backward (tensor/token_grouping.h): positions grouped by
// token, in the order that keeps the GPU's sums bitwise the CPU's. Runs without a GPU.
#include "tensor/token_grouping.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "tensor/cpu/kernels.h"

TEST_CASE("positions are grouped by token, ascending within each", "[buckets]") {
  const std::vector<int32_t> tokens = {5, 3, 5, 7, 3, 5};
  std::vector<int32_t> distinct(6), offsets(7), positions(6);
  const int count = ds::tensor::group_positions_by_token(tokens.data(), 6, distinct.data(),
                                                         offsets.data(), positions.data());
  REQUIRE(count == 3);
  CHECK(std::vector<int32_t>(distinct.begin(), distinct.begin() + 3) ==
        std::vector<int32_t>{3, 5, 7});
  CHECK(std::vector<int32_t>(offsets.begin(), offsets.begin() + 4) ==
        std::vector<int32_t>{0, 2, 5, 6});
  CHECK(positions == std::vector<int32_t>{1, 4, 0, 2, 5, 3});
  CHECK(ds::tensor::group_positions_by_token(tokens.data(), 0, distinct.data(), offsets.data(),
                                             positions.data()) == 0);
  CHECK(offsets[0] == 0);
}

TEST_CASE("summing by token buckets gives the CPU's embedding gradient bit for bit", "[buckets]") {
  // What wte_backward_kernel does per (token, channel), on the host: start from the
  // accumulator, add the token's positions in bucket order.
  const int B = 3, T = 17, C = 5, V = 11, N = B * T;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> token(0, V - 1);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<int32_t> tokens(N);
  for (auto& t : tokens) t = token(rng);
  std::vector<float> dout(size_t(N) * C), start(size_t(V) * C);
  for (auto& x : dout) x = value(rng);
  for (auto& x : start) x = value(rng);

  std::vector<float> cpu = start;
  ds::tensor::cpu::encoder_backward(cpu.data(), nullptr, dout.data(), tokens.data(), B, T, C);

  std::vector<int32_t> distinct(N), offsets(N + 1), positions(N);
  const int count = ds::tensor::group_positions_by_token(tokens.data(), N, distinct.data(),
                                                         offsets.data(), positions.data());
  std::vector<float> buckets = start;
  for (int u = 0; u < count; ++u) {
    for (int c = 0; c < C; ++c) {
      float sum = buckets[size_t(distinct[u]) * C + c];
      for (int i = offsets[u]; i < offsets[u + 1]; ++i) sum += dout[size_t(positions[i]) * C + c];
      buckets[size_t(distinct[u]) * C + c] = sum;
    }
  }
  CHECK(std::memcmp(buckets.data(), cpu.data(), sizeof(float) * cpu.size()) == 0);
}

TEST_CASE("grouping matches a stable sort by token for any int32 tokens", "[buckets]") {
  std::mt19937 rng(7);
  for (const auto& [n, low, high] :
       {std::tuple{65536, 0, 50256}, std::tuple{1000, 0, 3}, std::tuple{777, -5000000, 5000000},
        std::tuple{300, INT32_MIN, INT32_MAX}, std::tuple{1, 9, 9}}) {
    INFO("n=" << n << " tokens in [" << low << ", " << high << "]");
    std::uniform_int_distribution<int32_t> token(low, high);
    std::vector<int32_t> tokens(n);
    for (auto& t : tokens) t = token(rng);
    std::vector<int32_t> expected(n);
    for (int i = 0; i < n; ++i) expected[i] = i;
    std::stable_sort(expected.begin(), expected.end(),
                     [&](int32_t a, int32_t b) { return tokens[a] < tokens[b]; });
    std::vector<int32_t> distinct(n), offsets(n + 1), positions(n);
    const int count = ds::tensor::group_positions_by_token(tokens.data(), n, distinct.data(),
                                                           offsets.data(), positions.data());
    CHECK(positions == expected);
    REQUIRE(count >= 1);
    CHECK(offsets[count] == n);
    for (int u = 0; u < count; ++u) {
      CHECK(tokens[positions[offsets[u]]] == distinct[u]);
      if (u > 0) CHECK(distinct[u - 1] < distinct[u]);
    }
  }
}
