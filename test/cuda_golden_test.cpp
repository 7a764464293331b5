// The models on a GPU against PyTorch's golden fixtures: the same checks and tolerances as on
// the CPU (golden_checks.h), with every op on tensor::cuda::CudaOps. Skipped without a GPU.
#include <catch2/catch.hpp>

#include "cuda_test_helpers.h"
#include "golden_checks.h"
#include "tensor/cuda/cuda_ops.h"

namespace {

template <typename Check>
void for_each_fixture_on_gpu(Check check) {
  if (!ds_cuda_test::gpu_available()) return;
  ds::tensor::cuda::CudaOps ops(0);
  for (const char* fixture : golden::kFixtures) {
    INFO(fixture << " on cuda:0");
    check(fixture, ops);
  }
}

}  // namespace

TEST_CASE("on the GPU, forward and backward match PyTorch", "[cuda]") {
  for_each_fixture_on_gpu(golden::check_forward_backward);
}

TEST_CASE("on the GPU, ignored targets are left out of the loss", "[cuda]") {
  for_each_fixture_on_gpu(golden::check_masked);
}

TEST_CASE("on the GPU, ten AdamW steps follow PyTorch's losses", "[cuda]") {
  for_each_fixture_on_gpu(golden::check_adamw);
}

TEST_CASE("on the GPU, a training step allocates nothing after the first", "[cuda]") {
  for_each_fixture_on_gpu(golden::check_no_allocation);
}
