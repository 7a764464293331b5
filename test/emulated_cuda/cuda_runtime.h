// A CPU emulation of the parts of the CUDA runtime that device code uses, standing in for the
// real <cuda_runtime.h> when a test builds a kernel header with the host compiler (with this
// folder first on the include path). Every thread of a block is a host thread; __syncthreads,
// __syncwarp and the shuffles are barriers among them, so a kernel that forgets one shows it as
// a wrong result rather than passing by luck of the hardware's lockstep. Blocks run one after
// another: a kernel's static __shared__ arrays are its function's statics, and its dynamic
// shared memory is the running block's (detail::dynamic_shared_memory(), which
// tensor/cuda/device_primitives.cuh leaves to this file under DS_EMULATED_CUDA).
//
// It checks a kernel's logic (indexing, masking, the order of its synchronisation), not its
// speed, nor what only hardware enforces (alignment, shared-memory limits); those stay with
// the cuda tests on a GPU.
#pragma once

#include <math.h>

#include <array>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define DS_EMULATED_CUDA 1
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace ds_emulated_cuda {

constexpr unsigned kWarpSize = 32;

// What the threads of the running block share: their barriers, each warp's shuffle slots, and
// the dynamic shared memory.
struct BlockState {
  struct Warp {
    std::barrier<> barrier{kWarpSize};
    double slots[kWarpSize] = {};
    alignas(16) unsigned char exchange[kWarpSize][64] = {};  // warp_all's
  };
  struct alignas(128) SharedChunk {
    unsigned char bytes[128];
  };
  BlockState(unsigned threads, size_t shared_bytes)
      : block(threads), shared((shared_bytes + sizeof(SharedChunk) - 1) / sizeof(SharedChunk)) {
    for (unsigned w = 0; w < threads / kWarpSize; ++w) warps.push_back(std::make_unique<Warp>());
  }
  std::barrier<> block;
  std::vector<std::unique_ptr<Warp>> warps;
  std::vector<SharedChunk> shared;
};

inline thread_local BlockState* current_block = nullptr;

// A thread's index within its block, x fastest: warps are runs of 32 of it, as on the hardware.
inline unsigned linear_thread() {
  return (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
}
inline BlockState::Warp& my_warp() { return *current_block->warps[linear_thread() / kWarpSize]; }

// Runs kernel(args...) over `grid` blocks of `block` threads (a multiple of 32 in all) with
// `shared_bytes` of dynamic shared memory, block after block: kernel<<<grid, block,
// shared_bytes>>>(args...).
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, Args... args) {
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        const unsigned count = block.x * block.y * block.z;
        BlockState state(count, shared_bytes);
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < count; ++t) {
          threads.emplace_back([&, t] {
            threadIdx = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
            blockIdx = {x, y, z};
            blockDim = block;
            gridDim = grid;
            current_block = &state;
            kernel(args...);
          });
        }
        for (std::thread& thread : threads) thread.join();
      }
    }
  }
}

}  // namespace ds_emulated_cuda

namespace ds::tensor::cuda::detail {
inline unsigned char* dynamic_shared_memory() {
  return ds_emulated_cuda::current_block->shared.front().bytes;
}
}  // namespace ds::tensor::cuda::detail

// Rounded as written, never fused into an FMA.
inline float __fmul_rn(float a, float b) { return a * b; }

inline int min(int a, int b) { return a < b ? a : b; }

inline void __syncthreads() { ds_emulated_cuda::current_block->block.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) {
  ds_emulated_cuda::my_warp().barrier.arrive_and_wait();
}

namespace ds_emulated_cuda {

// Each lane's `value` from lane source(lane). Every lane of the warp must call it, as with
// full-mask shuffles on the hardware.
template <typename T, typename Source>
T shuffle(T value, Source source) {
  auto& warp = my_warp();
  const unsigned lane = linear_thread() % kWarpSize;
  warp.slots[lane] = static_cast<double>(value);
  warp.barrier.arrive_and_wait();
  const T other = static_cast<T>(warp.slots[source(lane) % kWarpSize]);
  warp.barrier.arrive_and_wait();  // no lane overwrites its slot before all have read
  return other;
}

// What the hardware would fault on: an access `bytes`-aligned instructions need (ldmatrix rows,
// cp.async) at an address that is not. The emulation stops the test with the address.
inline void require_aligned(const void* p, size_t bytes, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % bytes == 0) return;
  std::fprintf(stderr, "emulated CUDA: %s at %p is not %zu-byte aligned\n", what, p, bytes);
  std::abort();
}

// Every lane's `mine`, by lane: what a warp-wide instruction that reads the other lanes'
// registers (mma.sync) sees. Every lane of the warp must call it.
template <typename T>
std::array<T, kWarpSize> warp_all(const T& mine) {
  static_assert(sizeof(T) <= sizeof(BlockState::Warp::exchange[0]), "fits a lane's slot");
  auto& warp = my_warp();
  std::memcpy(warp.exchange[linear_thread() % kWarpSize], &mine, sizeof(T));
  warp.barrier.arrive_and_wait();
  std::array<T, kWarpSize> all;
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    std::memcpy(&all[lane], warp.exchange[lane], sizeof(T));
  }
  warp.barrier.arrive_and_wait();  // no lane overwrites its slot before all have read
  return all;
}

}  // namespace ds_emulated_cuda

template <typename T>
T __shfl_xor_sync(unsigned, T value, int lane_mask) {
  return ds_emulated_cuda::shuffle(value,
                                   [&](unsigned lane) { return lane ^ unsigned(lane_mask); });
}
template <typename T>
T __shfl_sync(unsigned, T value, int source_lane) {
  return ds_emulated_cuda::shuffle(value, [&](unsigned) { return unsigned(source_lane); });
}
