// The launch-free building blocks of the kernels here: block shapes, the block's dynamic shared
// memory, and warp-wide reductions by shuffles. Nothing in it needs more than CUDA's device
// language, so kernel headers built on it also compile against the CPU emulation the tests use
// (test/emulated_cuda/, which defines DS_EMULATED_CUDA and its own dynamic_shared_memory()).
#pragma once

namespace ds::tensor::cuda::detail {

constexpr int kWarp = 32;
constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / kWarp;  // row kernels: one warp per row

#ifndef DS_EMULATED_CUDA
// The block's dynamic shared memory (the launch's third argument), 128-byte aligned.
__device__ inline unsigned char* dynamic_shared_memory() {
  extern __shared__ __align__(128) unsigned char memory[];
  return memory;
}
#endif

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
