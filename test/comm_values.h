// Deterministic test values for collectives: small integers times rank, exact in f32, bf16
// and f16 for sums, averages and maxima over up to 4 ranks, so every result is checked for
// exact equality.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>

#include "comm/process_group.h"
#include "comm_helpers.h"
#include "tensor/tensor.h"

namespace ds::testing {

inline float value(int rank, size_t i) {
  return static_cast<float>((rank + 1) * static_cast<int>(i % 13 + 1));
}

inline void put(tensor::Tensor& t, size_t i, float v) {
  switch (t.dtype()) {
    case tensor::DType::kF32:
      t.data<float>()[i] = v;
      return;
    case tensor::DType::kBF16:
      t.data<uint16_t>()[i] = tensor::f32_to_bf16(v);
      return;
    case tensor::DType::kF16:
      t.data<uint16_t>()[i] = tensor::f32_to_f16(v);
      return;
  }
}

inline float at(const tensor::Tensor& t, size_t i) {
  switch (t.dtype()) {
    case tensor::DType::kF32:
      return t.data<float>()[i];
    case tensor::DType::kBF16:
      return tensor::bf16_to_f32(t.data<uint16_t>()[i]);
    case tensor::DType::kF16:
      return tensor::f16_to_f32(t.data<uint16_t>()[i]);
  }
  return 0;
}

inline tensor::Tensor make(size_t count, tensor::DType dtype) {
  return tensor::Tensor::zeros({static_cast<int64_t>(count)}, dtype,
                               tensor::MemoryCategory::kCommunication);
}

// What `op` over n ranks gives at element i, rank r holding v(r, i).
inline float reduced(comm::ReduceOp op, int n, size_t i,
                     const std::function<float(int, size_t)>& v) {
  float sum = 0;
  float max = v(0, i);
  for (int r = 0; r < n; ++r) {
    sum += v(r, i);
    max = std::max(max, v(r, i));
  }
  if (op == comm::ReduceOp::kMax) return max;
  return op == comm::ReduceOp::kAvg ? sum / static_cast<float>(n) : sum;
}

// Compares every element, exactly unless `relative` allows that much of the expected value;
// throws naming the first mismatch.
template <typename Expected>
void expect_values(const tensor::Tensor& t, Expected&& expected, const std::string& what,
                   float relative = 0) {
  for (size_t i = 0; i < static_cast<size_t>(t.numel()); ++i) {
    const float want = expected(i);
    const float got = at(t, i);
    expect(std::abs(got - want) <= relative * std::abs(want),
           "{} ({}, {} elements): element {} is {}, expected {}", what,
           tensor::dtype_name(t.dtype()), t.numel(), i, got, want);
  }
}

}  // namespace ds::testing
