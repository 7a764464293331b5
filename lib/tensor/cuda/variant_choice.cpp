#include "tensor/cuda/variant_choice.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <utility>

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

// Each variant's fastest of three runs, after one each that loads its kernels. The runs
// alternate, so that a clock still rising at the start of a run favours neither.
std::array<float, 2> fastest_ms(const std::function<void(int)>& run, cudaStream_t stream) {
  const EventPair events;
  run(0);
  run(1);
  std::array<float, 2> best{};
  for (int round = 0; round < 3; ++round) {
    for (int v = 0; v < 2; ++v) {
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

}  // namespace

VariantChoice::VariantChoice(std::string kernel, std::array<std::string, 2> variants)
    : kernel_(std::move(kernel)), variants_(std::move(variants)) {}

int VariantChoice::pick(const std::string& size, const std::function<void(int)>& run,
                        cudaStream_t stream) {
  const auto [known, fresh] = choices_.try_emplace(size);
  Choice& choice = known->second;
  if (fresh) {
    choice.ms = fastest_ms(run, stream);
    choice.variant = choice.ms[1] < choice.ms[0] ? 1 : 0;
  }
  return choice.variant;
}

std::string VariantChoice::report() const {
  std::string report;
  for (const auto& [size, choice] : choices_) {
    report += fmt::format("{}{} at {}: {} ({} {:.3f} ms, {} {:.3f} ms)", report.empty() ? "" : "; ",
                          kernel_, size, variants_[choice.variant], variants_[0], choice.ms[0],
                          variants_[1], choice.ms[1]);
  }
  return report;
}

}  // namespace ds::tensor::cuda
