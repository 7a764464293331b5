// A group of one CPU rank: every collective is a local copy (or nothing). Single-process runs
// and one-rank subgroups (e.g. the pipeline of a run without pipeline parallelism) use it, so
// they need no sockets or shared memory.
#pragma once

#include "comm/cpu_process_group.h"

namespace ds::comm {

class SelfProcessGroup : public CpuProcessGroup {
 public:
  explicit SelfProcessGroup(GroupContext context);
  ~SelfProcessGroup() override { stop_executor(); }
  std::string_view backend() const override { return "self"; }

 protected:
  void run_allreduce(TensorRef tensor, ReduceOp op) override;
  void run_reduce_scatter(TensorRef output, TensorRef input, ReduceOp op) override;
  void run_allgather(TensorRef output, TensorRef input) override;
  void run_broadcast(TensorRef, int) override {}
  void run_barrier() override {}
};

}  // namespace ds::comm
