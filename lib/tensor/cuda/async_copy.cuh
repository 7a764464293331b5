// Copies from global to shared memory that run while the block computes (cp.async, compute
// capability 8.0 on): a kernel queues a tile's 16-byte chunks, commits them as a group, and before
// reading the tile waits until at most `kPending` later groups are still in flight, then
// synchronises the block. So the next tile loads while the current one is multiplied (double
// buffering). Under DS_EMULATED_CUDA (test/emulated_cuda/) the copies wait in the thread's groups
// and land only when a wait lets them, as late as the hardware may, so that a kernel reading a
// tile it did not wait for reads stale bytes there too; misaligned addresses stop the test.
// copy_async_16_or_zeros writes zeros instead where the source is out of range (rows past the
// sequence), without reading it, so a tile of a tensor whose length is not a multiple of the tile
// needs no padded copy.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace ds::tensor::cuda::detail {

#if defined(DS_EMULATED_CUDA)

struct EmulatedCopy {
  void* dst;
  const void* src;  // nullptr: 16 zero bytes
};
// The calling thread's copies: the group being queued, and the committed ones, oldest first.
inline thread_local std::vector<EmulatedCopy> open_copies;
inline thread_local std::vector<std::vector<EmulatedCopy>> committed_copies;

inline void copy_async_16(void* shared_dst, const void* global_src) {
  ds_emulated_cuda::require_aligned(shared_dst, 16, "a cp.async destination");
  ds_emulated_cuda::require_aligned(global_src, 16, "a cp.async source");
  open_copies.push_back({shared_dst, global_src});
}
inline void copy_async_16_or_zeros(void* shared_dst, const void* global_src, bool in_range) {
  ds_emulated_cuda::require_aligned(shared_dst, 16, "a cp.async destination");
  ds_emulated_cuda::require_aligned(global_src, 16, "a cp.async source");
  open_copies.push_back({shared_dst, in_range ? global_src : nullptr});
}
inline void commit_copies() {
  committed_copies.push_back(std::move(open_copies));
  open_copies.clear();
}
template <int kPending>
void wait_copies() {
  while (committed_copies.size() > size_t{kPending}) {
    for (const EmulatedCopy& copy : committed_copies.front()) {
      if (copy.src == nullptr) {
        std::memset(copy.dst, 0, 16);
      } else {
        std::memcpy(copy.dst, copy.src, 16);
      }
    }
    committed_copies.erase(committed_copies.begin());
  }
}

#else

// 16 bytes, both addresses 16-byte aligned.
__device__ __forceinline__ void copy_async_16(void* shared_dst, const void* global_src) {
  const auto dst = static_cast<uint32_t>(__cvta_generic_to_shared(shared_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(global_src));
}
// The same, or 16 zero bytes when !in_range: the copy then reads nothing from global_src (its
// source size is 0), which must still be a valid, aligned address.
__device__ __forceinline__ void copy_async_16_or_zeros(void* shared_dst, const void* global_src,
                                                       bool in_range) {
  const auto dst = static_cast<uint32_t>(__cvta_generic_to_shared(shared_dst));
  const uint32_t source_bytes = in_range ? 16u : 0u;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global_src),
               "r"(source_bytes));
}
__device__ __forceinline__ void commit_copies() { asm volatile("cp.async.commit_group;\n" ::); }
// Until at most kPending of the committed groups are unfinished (this thread's copies).
template <int kPending>
__device__ __forceinline__ void wait_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

#endif

}  // namespace ds::tensor::cuda::detail
