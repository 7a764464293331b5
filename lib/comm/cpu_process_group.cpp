#include "comm/cpu_process_group.h"

namespace ds::comm {

WorkPtr CpuProcessGroup::submit(std::string_view op, std::function<void()> body, bool async_op) {
  auto guarded = [this, op, body = std::move(body)] {
    {
      std::lock_guard lock(broken_mutex_);
      if (!broken_.empty()) {
        throw Error(fmt::format("{} on group '{}': the group is unusable after an earlier "
                                "failure: {}",
                                op, name(), broken_),
                    "a failed collective leaves ranks at different points; restart the run");
      }
    }
    try {
      body();
    } catch (const std::exception& e) {
      std::lock_guard lock(broken_mutex_);
      if (broken_.empty()) broken_ = e.what();
      throw;
    }
  };
  return executor_->submit(fmt::format("{} on group '{}'", op, name()), std::move(guarded),
                           async_op);
}

WorkPtr CpuProcessGroup::allreduce_impl(TensorRef t, ReduceOp op, bool async_op) {
  return submit(
      "allreduce", [=, this] { run_allreduce(t, op); }, async_op);
}

WorkPtr CpuProcessGroup::reduce_scatter_impl(TensorRef out, TensorRef in, ReduceOp op,
                                             bool async_op) {
  return submit(
      "reduce_scatter", [=, this] { run_reduce_scatter(out, in, op); }, async_op);
}

WorkPtr CpuProcessGroup::allgather_impl(TensorRef out, TensorRef in, bool async_op) {
  return submit(
      "allgather", [=, this] { run_allgather(out, in); }, async_op);
}

WorkPtr CpuProcessGroup::broadcast_impl(TensorRef t, int root, bool async_op) {
  return submit(
      "broadcast", [=, this] { run_broadcast(t, root); }, async_op);
}

WorkPtr CpuProcessGroup::barrier_impl(bool async_op) {
  return submit(
      "barrier", [this] { run_barrier(); }, async_op);
}

}  // namespace ds::comm
