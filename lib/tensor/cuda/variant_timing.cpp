#include "tensor/cuda/variant_timing.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "tensor/cuda/cuda_check.h"

namespace ds::tensor::cuda {
namespace {

// A pair of timing events, released however the timing ends.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventPair() {
    DS_CUDA_CALL(cudaEventCreate(&start));
    DS_CUDA_CALL(cudaEventCreate(&stop));
  }
  ~EventPair() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
};

}  // namespace

std::vector<float> time_each(int count, const std::function<void(int)>& run, cudaStream_t stream) {
  const EventPair events;
  for (int v = 0; v < count; ++v) run(v);
  std::vector<float> best(count);
  for (int round = 0; round < 3; ++round) {
    for (int v = 0; v < count; ++v) {
      DS_CUDA_CALL(cudaEventRecord(events.start, stream));
      run(v);
      DS_CUDA_CALL(cudaEventRecord(events.stop, stream));
      DS_CUDA_CALL(cudaEventSynchronize(events.stop));
      float ms = 0;
      DS_CUDA_CALL(cudaEventElapsedTime(&ms, events.start, events.stop));
      best[v] = round == 0 ? ms : std::min(best[v], ms);
    }
  }
  return best;
}

VariantChoice::Times time_variants(const std::function<void(int)>& run, cudaStream_t stream) {
  const std::vector<float> ms = time_each(2, run, stream);
  return {ms[0], ms[1]};
}

}  // namespace ds::tensor::cuda
