// The table of the CUDA ops' profiler (tensor/op_times.h), which builds and runs without a GPU.
#include "tensor/op_times.h"

#include <catch2/catch.hpp>
#include <string>

using ds::tensor::OpTimes;

TEST_CASE("op times add up per op and report the most time first", "[op_times]") {
  OpTimes times;
  times.add("layernorm_forward", 1.0);
  times.add("matmul_forward 16x8x32", 3.0);
  times.add("layernorm_forward", 0.5);
  times.add("adam_step", 1.5);
  CHECK(times.total_ms() == Approx(6.0));
  const std::string report = times.report("GPU time by op");
  INFO(report);
  CHECK(report.rfind("GPU time by op: 6.0 ms in 3 ops\n", 0) == 0);
  const size_t matmul = report.find("matmul_forward 16x8x32");
  const size_t adam = report.find("adam_step");
  const size_t layernorm = report.find("layernorm_forward");
  REQUIRE(matmul != std::string::npos);
  REQUIRE(adam != std::string::npos);
  REQUIRE(layernorm != std::string::npos);
  // 3.0 ms, then the tie at 1.5 ms in name order.
  CHECK(matmul < adam);
  CHECK(adam < layernorm);
  CHECK(report.find("      2 calls       1.500 ms   25.0 %") != std::string::npos);
  CHECK(report.find("      1 calls       3.000 ms   50.0 %") != std::string::npos);
}

TEST_CASE("op times report nothing but the heading when empty", "[op_times]") {
  CHECK(OpTimes().report("GPU time by op") == "GPU time by op: 0.0 ms in 0 ops");
}

TEST_CASE("op times leave out each op's warm-up calls", "[op_times]") {
  OpTimes times(1);
  times.add("matmul_forward 16x8x32", 40.0);  // the first call: module loading, heuristics
  times.add("matmul_forward 16x8x32", 2.0);
  times.add("adam_step", 9.0);
  times.add("matmul_forward 16x8x32", 3.0);
  CHECK(times.total_ms() == Approx(5.0));
  const std::string report = times.report("GPU time by op");
  INFO(report);
  // adam_step ran only its warm-up call: no line.
  CHECK(report.rfind("GPU time by op: 5.0 ms in 1 ops (each op's first call left out)\n", 0) == 0);
  CHECK(report.find("      2 calls       5.000 ms  100.0 %") != std::string::npos);
  CHECK(report.find("adam_step") == std::string::npos);
}

TEST_CASE("op times report at most the rows asked for and say how many more", "[op_times]") {
  OpTimes times;
  times.add("a", 3.0);
  times.add("b", 2.0);
  times.add("c", 1.0);
  const std::string report = times.report("GPU idle between ops", 2, "pairs of ops");
  INFO(report);
  CHECK(report.rfind("GPU idle between ops: 6.0 ms in 3 pairs of ops\n", 0) == 0);
  CHECK(report.find("\n  a ") != std::string::npos);
  CHECK(report.find("\n  b ") != std::string::npos);
  CHECK(report.find("\n  c ") == std::string::npos);
  CHECK(report.find("\n  (1 more)") != std::string::npos);
}
