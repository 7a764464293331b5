// Warp-wide reductions by shuffles, with no other CUDA dependency, so that kernels built from
// them also compile against the CPU emulation the tests use (test/emulated_cuda/).
#pragma once

namespace ds::tensor::cuda::detail {

constexpr int kWarp = 32;

// Butterfly reductions: every lane ends with the same value, combined in the same order on
// every run.
template <typename T>
__device__ inline T warp_sum(T x) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ inline float warp_max(float x) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  }
  return x;
}

}  // namespace ds::tensor::cuda::detail
