// A CPU emulation of the parts of the CUDA runtime that device code uses, standing in for the
// real <cuda_runtime.h> when a test builds a kernel header with the host compiler (with this
// folder first on the include path). Every thread of a block is a host thread; __syncthreads,
// __syncwarp and the shuffles are barriers among them, so a kernel that forgets one shows it as
// a wrong result rather than passing by luck of the hardware's lockstep. Blocks run one after
// another, so a kernel's dynamic shared memory is one array the test defines.
//
// It checks a kernel's logic (indexing, masking, the order of its synchronisation), not its
// speed, nor what only hardware enforces (alignment, shared-memory limits); those stay with
// the cuda tests on a GPU.
#pragma once

#include <math.h>

#include <barrier>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __shared__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace ds_emulated_cuda {

constexpr unsigned kWarpSize = 32;

// What the threads of the running block share: their barriers and each warp's shuffle slots.
struct BlockState {
  struct Warp {
    std::barrier<> barrier{kWarpSize};
    double slots[kWarpSize] = {};
  };
  explicit BlockState(unsigned threads) : block(threads) {
    for (unsigned w = 0; w < threads / kWarpSize; ++w) warps.push_back(std::make_unique<Warp>());
  }
  std::barrier<> block;
  std::vector<std::unique_ptr<Warp>> warps;
};

inline thread_local BlockState* current_block = nullptr;

inline BlockState::Warp& my_warp() { return *current_block->warps[threadIdx.x / kWarpSize]; }

// Runs kernel(args...) over `grid` blocks of `block.x` threads (a multiple of 32), block after
// block.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args... args) {
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        BlockState state(block.x);
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block.x; ++t) {
          threads.emplace_back([&, t] {
            threadIdx = {t, 0, 0};
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

inline void __syncthreads() { ds_emulated_cuda::current_block->block.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) {
  ds_emulated_cuda::my_warp().barrier.arrive_and_wait();
}

// Every lane of the warp must call it, as with full-mask shuffles on the hardware.
template <typename T>
T __shfl_xor_sync(unsigned, T value, int lane_mask) {
  auto& warp = ds_emulated_cuda::my_warp();
  const unsigned lane = threadIdx.x % ds_emulated_cuda::kWarpSize;
  warp.slots[lane] = static_cast<double>(value);
  warp.barrier.arrive_and_wait();
  const T other = static_cast<T>(warp.slots[lane ^ static_cast<unsigned>(lane_mask)]);
  warp.barrier.arrive_and_wait();  // no lane overwrites its slot before all have read
  return other;
}
