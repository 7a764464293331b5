// Copies from global to shared memory that run while the block computes (cp.async, compute
// capability 8.0 on): a kernel queues a tile's 16-byte chunks, commits them as a group, and before
// reading the tile waits until at most `kPending` later groups are still in flight, then
// synchronises the block. So the next tile loads while the current one is multiplied (double
// buffering). Under DS_EMULATED_CUDA (test/emulated_cuda/) a copy happens when it is queued and
// the waits do nothing; the order of the block's synchronisation still matters there.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

namespace ds::tensor::cuda::detail {

#if defined(DS_EMULATED_CUDA)

inline void copy_async_16(void* shared_dst, const void* global_src) {
  std::memcpy(shared_dst, global_src, 16);
}
inline void commit_copies() {}
template <int kPending>
void wait_copies() {}

#else

// 16 bytes, both addresses 16-byte aligned.
__device__ __forceinline__ void copy_async_16(void* shared_dst, const void* global_src) {
  const auto dst = static_cast<uint32_t>(__cvta_generic_to_shared(shared_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(global_src));
}
__device__ __forceinline__ void commit_copies() { asm volatile("cp.async.commit_group;\n" ::); }
// Until at most kPending of the committed groups are unfinished (this thread's copies).
template <int kPending>
__device__ __forceinline__ void wait_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

#endif

}  // namespace ds::tensor::cuda::detail
