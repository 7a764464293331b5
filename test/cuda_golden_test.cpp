// The models on a GPU against PyTorch's golden fixtures: the same checks and tolerances as on
// the CPU (golden_checks.h), with every op on tensor::cuda::CudaOps, twice: with attention
// materialised (the default at these sizes) and flash-style (forced: flash_above_bytes 0).
// Skipped without a GPU.
#include <catch2/catch.hpp>

#include "cuda_test_helpers.h"
#include "golden_checks.h"
#include "tensor/cuda/cuda_ops.h"

namespace {

void on_gpu(golden::Check check) {
  if (!ds_cuda_test::gpu_available()) return;
  using ds::tensor::cuda::CudaOps;
  for (const bool flash : {false, true}) {
    INFO((flash ? "flash-style attention" : "materialised attention"));
    CudaOps ops(0, ds::tensor::MatmulPrecision::kFp32, flash ? 0 : CudaOps::kFlashAboveBytes);
    golden::for_each_fixture(check, ops);
  }
}

}  // namespace

TEST_CASE("on the GPU, forward and backward match PyTorch", "[cuda]") {
  on_gpu(golden::check_forward_backward);
}

TEST_CASE("on the GPU, ignored targets are left out of the loss", "[cuda]") {
  on_gpu(golden::check_masked);
}

TEST_CASE("on the GPU, ten AdamW steps follow PyTorch's losses", "[cuda]") {
  on_gpu(golden::check_adamw);
}

TEST_CASE("on the GPU, a training step allocates nothing after the first", "[cuda]") {
  on_gpu(golden::check_no_allocation);
}
