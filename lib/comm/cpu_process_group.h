// The common part of the CPU backends (shared memory and Gloo): collectives are run by an
// OrderedExecutor, so a backend only writes the synchronous body of each. After a collective
// fails, the group is unusable (peers are at different points of the sequence) and says so.
#pragma once

#include <mutex>

#include "comm/ordered_executor.h"
#include "comm/process_group.h"

namespace ds::comm {

class CpuProcessGroup : public ProcessGroup {
 public:
  explicit CpuProcessGroup(GroupContext context) : ProcessGroup(std::move(context)) {}

 protected:
  // Synchronous bodies, run in issue order on one thread at a time.
  virtual void run_allreduce(TensorRef tensor, ReduceOp op) = 0;
  virtual void run_reduce_scatter(TensorRef output, TensorRef input, ReduceOp op) = 0;
  virtual void run_allgather(TensorRef output, TensorRef input) = 0;
  virtual void run_broadcast(TensorRef tensor, int root) = 0;
  virtual void run_barrier() = 0;

  WorkPtr allreduce_impl(TensorRef tensor, ReduceOp op, bool async_op) final;
  WorkPtr reduce_scatter_impl(TensorRef output, TensorRef input, ReduceOp op, bool async_op) final;
  WorkPtr allgather_impl(TensorRef output, TensorRef input, bool async_op) final;
  WorkPtr broadcast_impl(TensorRef tensor, int root, bool async_op) final;
  WorkPtr barrier_impl(bool async_op) final;
  bool accepts(const tensor::Device& device) const override { return device.is_cpu(); }

  // Backends destroy their transport only after the executor drained: call first in their
  // destructor.
  void stop_executor() { executor_.reset(); }

 private:
  WorkPtr submit(std::string_view op, std::function<void()> body, bool async_op);

  std::unique_ptr<OrderedExecutor> executor_ = std::make_unique<OrderedExecutor>();
  std::mutex broken_mutex_;
  std::string broken_;  // the first failure, once one happened
};

}  // namespace ds::comm
