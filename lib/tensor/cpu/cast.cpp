#include "tensor/cpu/cast.h"

#include <cstring>

namespace ds::tensor::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

template <typename Fn>
void for_each(int64_t n, Fn&& fn) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

float load(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kBF16:
      return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16:
      return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
  return 0;
}

void store(void* p, DType dtype, int64_t i, float v) {
  switch (dtype) {
    case DType::kF32:
      static_cast<float*>(p)[i] = v;
      break;
    case DType::kBF16:
      static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
      break;
    case DType::kF16:
      static_cast<uint16_t*>(p)[i] = f32_to_f16(v);
      break;
  }
}

}  // namespace

void to_f32(float* out, const void* in, DType dtype, int64_t n) {
  if (dtype == DType::kF32) {
    if (out != in) std::memcpy(out, in, sizeof(float) * n);
    return;
  }
  for_each(n, [&](int64_t i) { out[i] = load(in, dtype, i); });
}

void from_f32(void* out, DType dtype, const float* in, int64_t n) {
  if (dtype == DType::kF32) {
    if (out != in) std::memcpy(out, in, sizeof(float) * n);
    return;
  }
  for_each(n, [&](int64_t i) { store(out, dtype, i, in[i]); });
}

void add_f32_into(void* out, DType dtype, const float* in, int64_t n) {
  for_each(n, [&](int64_t i) { store(out, dtype, i, load(out, dtype, i) + in[i]); });
}

void convert_scaled(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                    float scale) {
  if (scale == 1.0f && out_dtype == in_dtype) {
    if (out != in) std::memcpy(out, in, dtype_size(in_dtype) * static_cast<size_t>(n));
    return;
  }
  for_each(n, [&](int64_t i) { store(out, out_dtype, i, scale * load(in, in_dtype, i)); });
}

void add_scaled_into(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                     float scale) {
  for_each(n, [&](int64_t i) {
    store(out, out_dtype, i, load(out, out_dtype, i) + scale * load(in, in_dtype, i));
  });
}

}  // namespace ds::tensor::cpu
