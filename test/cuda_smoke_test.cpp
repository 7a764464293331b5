// Runs only where a GPU is present; elsewhere it reports why and passes as skipped.
#include <catch2/catch.hpp>
#include <cstdio>

#include "tensor/cuda/device_info.h"

TEST_CASE("a CUDA kernel round-trips through device memory", "[cuda]") {
  const auto info = ds::tensor::cuda::query_devices();
  if (info.device_count == 0) {
    WARN("no CUDA device (" << info.error << "): skipped");
    return;
  }
  std::string error;
  CHECK(ds::tensor::cuda::fill_round_trip(1.5f, 1000, &error));
  INFO(error);
}
