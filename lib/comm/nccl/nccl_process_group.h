// The NCCL backend: GPU tensors, one communicator per group, its ncclUniqueId passed through
// the Store. Operations run on the group's own CUDA stream (the communication stream), after
// the work already queued on the producer stream: the device's default stream unless follow()
// names another (a tensor::Ops compute stream), ordered by an event so that the host never
// waits for the GPU to start one. Waits poll the stream and NCCL's async error state, and a
// communicator that makes no progress within the collective timeout is aborted, so a dead
// peer fails the call instead of hanging it. NCCL reduces 16-bit types in their own precision.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <mutex>

#include "comm/process_group.h"

namespace ds::comm {

class NcclProcessGroup : public ProcessGroup {
 public:
  explicit NcclProcessGroup(GroupContext context);
  ~NcclProcessGroup() override;

  std::string_view backend() const override { return "nccl"; }

  // Later operations start after the work queued on `producer` by then (cudaStreamLegacy,
  // the default, for the device's default stream).
  void follow(cudaStream_t producer);
  // Waits for `event` (recorded after an operation), or aborts the communicator and throws.
  void wait_event(cudaEvent_t event, std::string_view op, Milliseconds timeout);

 protected:
  WorkPtr allreduce_impl(TensorRef tensor, ReduceOp op, bool async_op) override;
  WorkPtr reduce_scatter_impl(TensorRef output, TensorRef input, ReduceOp op,
                              bool async_op) override;
  WorkPtr allgather_impl(TensorRef output, TensorRef input, bool async_op) override;
  WorkPtr broadcast_impl(TensorRef tensor, int root, bool async_op) override;
  WorkPtr send_impl(TensorRef tensor, int dst, int tag, bool async_op) override;
  WorkPtr recv_impl(TensorRef tensor, int src, int tag, bool async_op) override;
  WorkPtr barrier_impl(bool async_op) override;
  bool accepts(const tensor::Device& device) const override;

 private:
  template <typename Launch>
  WorkPtr enqueue(std::string_view op, bool async_op, Launch&& launch);
  void check_usable(std::string_view op);
  // Aborts the communicator after `op` failed (`state`) or made no progress within `limit`, and
  // throws the error naming the group and, when the store knows it, the rank that died.
  [[noreturn]] void abort_and_throw(std::string_view op, ncclResult_t state, bool timed_out,
                                    Milliseconds limit);
  // Frees the communicator (finalized and destroyed, or aborted after a failure), the stream, the
  // event and the barrier value.
  void release() noexcept;
  // Finalizes the communicator and waits for that within the collective timeout; false when it
  // failed or timed out.
  bool finalized() noexcept;
  // The communicator's async state once it leaves ncclInProgress (or the error of asking for it);
  // still ncclInProgress at `deadline`.
  ncclResult_t settled_state(Clock::time_point deadline) noexcept;
  // Waits while NCCL is still issuing the last call's kernels (or setting the communicator up);
  // aborts and throws on an error or after the collective timeout.
  void wait_until_issued(std::string_view op);

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;  // the communication stream
  cudaStream_t producer_ = cudaStreamLegacy;
  // Recorded on the producer before each operation, for the communication stream to wait on
  // (cudaStreamWaitEvent takes the record current when it is called, so one event serves all).
  cudaEvent_t producer_ready_ = nullptr;
  float* barrier_value_ = nullptr;
  std::mutex mutex_;  // NCCL calls on one communicator must not interleave across threads
  std::atomic<bool> aborted_{false};
};

}  // namespace ds::comm
