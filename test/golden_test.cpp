// The CPU models against PyTorch (golden_checks.h).
#include <catch2/catch.hpp>

#include "golden_checks.h"

namespace {

template <typename Check>
void for_each_fixture(Check check) {
  for (const char* fixture : golden::kFixtures) {
    INFO(fixture);
    check(fixture, ds::tensor::cpu_ops());
  }
}

}  // namespace

TEST_CASE("forward and backward match PyTorch", "[golden]") {
  for_each_fixture(golden::check_forward_backward);
}

TEST_CASE("ignored targets are left out of the loss as PyTorch leaves them", "[golden]") {
  for_each_fixture(golden::check_masked);
}

TEST_CASE("ten AdamW steps follow PyTorch's losses", "[golden]") {
  for_each_fixture(golden::check_adamw);
}

TEST_CASE("a training step allocates nothing after the first", "[golden]") {
  for_each_fixture(golden::check_no_allocation);
}
