// bf16 tensors kept in regions that the model sizes in floats (a sublayer's saved activations,
// its backward scratch): they start at the region's first 16-byte boundary, as cuBLASLt and the
// kernels' 16-byte accesses want, so such a region needs up to 3 floats of slack before them.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

namespace ds::tensor::cuda {

// The first 16-byte boundary in a float region, as bf16 (const for a const region).
template <typename Float>
auto bf16_from(Float* region) {
  static_assert(std::is_same_v<std::remove_const_t<Float>, float>);
  const uintptr_t address = (reinterpret_cast<uintptr_t>(region) + 15) & ~uintptr_t{15};
  using Out = std::conditional_t<std::is_const_v<Float>, const __nv_bfloat16, __nv_bfloat16>;
  return reinterpret_cast<Out*>(address);
}

}  // namespace ds::tensor::cuda
