#include "tensor/dtype.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

using namespace ds::tensor;

TEST_CASE("bf16 rounds to nearest even and keeps specials", "[dtype]") {
  CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
  CHECK(bf16_to_f32(f32_to_bf16(-2.5f)) == -2.5f);
  // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
  CHECK(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8))) == 1.0f);
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::infinity()))));
}

TEST_CASE("f16 round trips, overflows to inf and keeps subnormals", "[dtype]") {
  for (float v : {0.0f, 1.0f, -1.5f, 65504.0f, 0.000061035156f, 3.14159f}) {
    INFO(v);
    CHECK(std::fabs(f16_to_f32(f32_to_f16(v)) - v) <= std::fabs(v) * 1e-3f);
  }
  CHECK(std::isinf(f16_to_f32(f32_to_f16(70000.0f))));
  CHECK(f16_to_f32(f32_to_f16(std::ldexp(1.0f, -24))) == std::ldexp(1.0f, -24));
  CHECK(f32_to_f16(1.0f) == 0x3c00);
  CHECK(f32_to_f16(-2.0f) == 0xc000);
  CHECK(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("dtype sizes and names", "[dtype]") {
  CHECK(dtype_size(DType::kF32) == 4);
  CHECK(dtype_size(DType::kBF16) == 2);
  CHECK(dtype_name(DType::kF16) == "f16");
}
