// DpComm over a comm::ProcessGroup: the data-parallel collectives of the ZeRO engine
// on real ranks (Gloo or shared memory between processes, NCCL on GPUs).
#pragma once

#include <memory>

#include "comm/process_group.h"
#include "tensor/memory.h"
#include "zero/dp_comm.h"

namespace ds::zero {

class ProcessGroupComm final : public DpComm {
 public:
  explicit ProcessGroupComm(std::shared_ptr<comm::ProcessGroup> group);

  int rank() const override { return group_->rank(); }
  int size() const override { return group_->size(); }
  void allreduce(void* data, tensor::DType dtype, int64_t n, Reduction op) override;
  std::unique_ptr<PendingOp> reduce_scatter(const void* full, void* out, tensor::DType dtype,
                                            int64_t piece, Reduction op, Mode mode) override;
  std::unique_ptr<PendingOp> allgather(const void* piece, void* out, tensor::DType dtype, int64_t n,
                                       Mode mode) override;
  double allreduce_sum(double value) override;
  bool allreduce_any(bool value) override;

  comm::ProcessGroup& group() { return *group_; }

 private:
  // A scratch area that grows once to the largest request (no allocation per step).
  void* scratch(size_t bytes);

  std::shared_ptr<comm::ProcessGroup> group_;
  tensor::Buffer scratch_;
};

}  // namespace ds::zero
