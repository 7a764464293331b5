// The CPU models against PyTorch (golden_checks.h); and the same checks on the emulated
// device (host memory reached as a GPU's is), which runs the harness cuda_golden_test runs.
#include <catch2/catch.hpp>

#include "golden_checks.h"

namespace {

void on_cpu_and_emulated(golden::Check check) {
  golden::for_each_fixture(check, ds::tensor::cpu_ops());
  golden::for_each_fixture(check, *ds::tensor::make_ops(ds::tensor::Device::emulated()));
}

}  // namespace

TEST_CASE("forward and backward match PyTorch", "[golden]") {
  on_cpu_and_emulated(golden::check_forward_backward);
}

TEST_CASE("ignored targets are left out of the loss as PyTorch leaves them", "[golden]") {
  on_cpu_and_emulated(golden::check_masked);
}

TEST_CASE("ten AdamW steps follow PyTorch's losses", "[golden]") {
  on_cpu_and_emulated(golden::check_adamw);
}

TEST_CASE("a training step allocates nothing after the first", "[golden]") {
  on_cpu_and_emulated(golden::check_no_allocation);
}
