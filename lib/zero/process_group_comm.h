// DpComm over a comm::ProcessGroup: the data-parallel collectives of the ZeRO engine
// on real ranks (Gloo or shared memory between processes on host memory, NCCL on a GPU's).
// The buffers live where `ops` computes: the host for cpu_ops(), a GPU for an NCCL group
// (zero/nccl_device_comm.h makes that one).
#pragma once

#include <memory>
#include <vector>

#include "comm/process_group.h"
#include "tensor/memory.h"
#include "tensor/ops.h"
#include "zero/dp_comm.h"

namespace ds::zero {

class ProcessGroupComm final : public DpComm {
 public:
  // `ops` stays alive as long as this object.
  explicit ProcessGroupComm(std::shared_ptr<comm::ProcessGroup> group,
                            tensor::Ops& ops = tensor::cpu_ops());

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
  // A scratch area on ops_.device() that grows once to the largest request (no allocation
  // per step).
  void* scratch(size_t bytes);
  tensor::Tensor wrap(void* data, int64_t n, tensor::DType dtype) const;

  std::shared_ptr<comm::ProcessGroup> group_;
  tensor::Ops& ops_;
  tensor::Buffer scratch_;
  std::vector<double> gathered_;  // allreduce_sum's values of every rank, in host memory
};

}  // namespace ds::zero
