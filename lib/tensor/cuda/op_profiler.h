// GPU time per op of the CUDA ops, when the environment sets DS_GPU_OP_PROFILE=1: each op is
// bracketed by a pair of CUDA events on the compute stream, and the time between them is added to
// the op's total once the GPU has passed the second. Ops run one after another on that stream, so
// the totals are where the GPU's time went. The time from one op's second event to the next op's
// first is the GPU idling between them (waiting for the host to queue work, or for work on another
// stream), added up per pair of ops ("<op> after <op>"), so that a step's gaps can be traced to
// the host code between the two ops. Copies to and from the host are ops here too.
// The tables count from the second training step on (restart()); a run of one step leaves out
// each op's first call (per shape) instead, which pays for loading kernels and planning.
// It is a measuring aid, for the profile that comes before an optimisation: the event records cost
// the host a few microseconds per op, and the report waits for the GPU. Off, it costs a branch.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "tensor/op_times.h"

namespace ds::tensor::cuda {

class OpProfiler {
 public:
  OpProfiler();  // on when DS_GPU_OP_PROFILE=1
  ~OpProfiler();
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  bool enabled() const { return enabled_; }

  // Times the work queued on `stream` during its lifetime as `op`, followed by its shape when
  // one is given ("matmul_forward 16384x768x2304"), so that each matmul of a model gets a line.
  class Scope {
   public:
    Scope(OpProfiler* profiler, const char* op, std::initializer_list<int64_t> shape,
          cudaStream_t stream);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    OpProfiler* profiler_;  // nullptr: profiling is off
    std::string op_;
    cudaStream_t stream_;
    cudaEvent_t start_ = nullptr;
  };
  // An op that another op calls is timed as part of it, not on its own (so that its time is not
  // counted twice, nor its start taken for the end of a gap).
  Scope time(const char* op, cudaStream_t stream, std::initializer_list<int64_t> shape = {}) {
    return Scope(enabled_ && depth_ == 0 ? this : nullptr, op, shape, stream);
  }

  // Counting starts again here (CudaOps: as the second training step begins): what came before,
  // the set-up and the first step with its planning and timing, is dropped. Waits for the GPU.
  void restart();

  // Waits for the GPU, then the tables of OpTimes::report: the time in ops and the largest idle
  // gaps between them; "" when off.
  std::string report();

 private:
  struct Pending {
    std::string op;
    cudaEvent_t start = nullptr;
    cudaEvent_t stop = nullptr;
  };
  static constexpr size_t kHarvestAt = 1024;  // pending pairs before finished ones are added up

  cudaEvent_t take_event();
  void finish(std::string op, cudaEvent_t start, cudaStream_t stream);
  // Adds up the finished pairs (all of them, waiting for the GPU, when `wait`), recycling their
  // events.
  void harvest(bool wait);

  // Adds the gap between the last finished pair and `next` (started after it on the stream), then
  // keeps `next` as the last, recycling the former last's events.
  void add_gap(Pending next);

  bool enabled_;
  int depth_ = 0;  // Scopes timing now: 0 or 1
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> spare_;
  // Until restart(), each op's first call is left out: its one-time costs are not the op's, nor
  // the idle time before it.
  OpTimes times_{1};
  OpTimes gaps_{1};
  bool restarted_ = false;
  Pending last_{};  // the last pair added up (start == nullptr: none yet)
};

}  // namespace ds::tensor::cuda
