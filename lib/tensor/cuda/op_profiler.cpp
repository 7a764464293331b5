#include "tensor/cuda/op_profiler.h"

#include <fmt/format.h>

#include <cstddef>
#include <cstdlib>
#include <string_view>
#include <utility>

#include "tensor/cuda/cuda_check.h"

namespace ds::tensor::cuda {

namespace {

bool profiling_requested() {
  const char* value = std::getenv("DS_GPU_OP_PROFILE");
  return value != nullptr && std::string_view(value) == "1";
}

constexpr size_t kGapRows = 15;

}  // namespace

OpProfiler::OpProfiler() : enabled_(profiling_requested()) {}

OpProfiler::~OpProfiler() {
  for (const Pending& p : pending_) {
    cudaEventSynchronize(p.stop);
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
  for (cudaEvent_t e : spare_) cudaEventDestroy(e);
  if (last_.start != nullptr) {
    cudaEventDestroy(last_.start);
    cudaEventDestroy(last_.stop);
  }
}

OpProfiler::Scope::Scope(OpProfiler* profiler, const char* op, std::initializer_list<int64_t> shape,
                         cudaStream_t stream)
    : profiler_(profiler), stream_(stream) {
  if (profiler_ == nullptr) return;
  op_ = op;
  const char* separator = " ";
  for (int64_t extent : shape) {
    op_ += separator;
    op_ += std::to_string(extent);
    separator = "x";
  }
  start_ = profiler_->take_event();
  DS_CUDA_CALL(cudaEventRecord(start_, stream_));
  ++profiler_->depth_;
}

OpProfiler::Scope::~Scope() {
  if (profiler_ == nullptr) return;
  --profiler_->depth_;
  try {
    profiler_->finish(std::move(op_), start_, stream_);
  } catch (...) {
    // A failed record loses one sample; the op's own error, if any, is reported by the op.
  }
}

cudaEvent_t OpProfiler::take_event() {
  if (!spare_.empty()) {
    cudaEvent_t e = spare_.back();
    spare_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  DS_CUDA_CALL(cudaEventCreate(&e));  // with timing, unlike the synchronisation events
  return e;
}

void OpProfiler::finish(std::string op, cudaEvent_t start, cudaStream_t stream) {
  cudaEvent_t stop = take_event();
  DS_CUDA_CALL(cudaEventRecord(stop, stream));
  pending_.push_back({std::move(op), start, stop});
  if (pending_.size() >= kHarvestAt) harvest(false);
  // Far behind (the host queues faster than the GPU runs): wait rather than grow without bound.
  if (pending_.size() >= 4 * kHarvestAt) harvest(true);
}

void OpProfiler::harvest(bool wait) {
  // The pairs finish in the order they were queued (the ops run one after another on the stream):
  // add up the finished ones from the front, up to the first still running. The ones added up
  // leave pending_ however this ends, their events handed on (to last_, then spare_).
  size_t done = 0;
  struct Erase {
    std::vector<Pending>& pending;
    const size_t& done;
    ~Erase() { pending.erase(pending.begin(), pending.begin() + static_cast<ptrdiff_t>(done)); }
  } erase{pending_, done};
  while (done < pending_.size()) {
    Pending& p = pending_[done];
    if (wait) DS_CUDA_CALL(cudaEventSynchronize(p.stop));
    const cudaError_t state = cudaEventQuery(p.stop);
    if (state == cudaErrorNotReady) break;
    DS_CUDA_CALL(state);
    float ms = 0;
    DS_CUDA_CALL(cudaEventElapsedTime(&ms, p.start, p.stop));
    times_.add(p.op, ms);
    Pending finished = std::exchange(p, Pending{});
    ++done;  // in the erased prefix before anything else can throw
    add_gap(std::move(finished));
  }
}

void OpProfiler::add_gap(Pending next) {
  if (last_.start != nullptr) {
    float ms = 0;
    DS_CUDA_CALL(cudaEventElapsedTime(&ms, last_.stop, next.start));
    gaps_.add(next.op + " after " + last_.op, ms);
    spare_.push_back(last_.start);
    spare_.push_back(last_.stop);
  }
  last_ = std::move(next);
}

void OpProfiler::restart() {
  if (!enabled_) return;
  harvest(true);
  times_ = OpTimes();
  gaps_ = OpTimes();
  restarted_ = true;
}

std::string OpProfiler::report() {
  if (!enabled_) return "";
  harvest(true);
  const char* steps = restarted_ ? ", steps 2 on" : "";
  return times_.report(fmt::format("GPU time by op (DS_GPU_OP_PROFILE=1{})", steps)) + "\n" +
         gaps_.report(fmt::format("GPU idle between ops, by the op it waited for{}", steps),
                      kGapRows, "pairs of ops");
}

}  // namespace ds::tensor::cuda
