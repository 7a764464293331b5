// The CPU models against PyTorch (golden_checks.h); and the same checks on the emulated
// device (host memory reached as a GPU's is), which runs the harness cuda_golden_test runs.
#include <catch2/catch.hpp>

#include "golden_checks.h"

namespace {

template <typename Check>
void for_each_fixture(Check check) {
  const auto emulated = ds::tensor::make_ops(ds::tensor::Device::emulated());
  for (const char* fixture : golden::kFixtures) {
    INFO(fixture);
    check(fixture, ds::tensor::cpu_ops());
    INFO("on the emulated device");
    check(fixture, *emulated);
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
