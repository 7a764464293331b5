// The data-parallel collectives on buffers that live on a device, over a DpComm that moves host
// memory (Gloo or shared memory between processes): each collective copies its input to host
// memory, runs there, and copies the result back. That is how ranks sharing one GPU (where NCCL
// cannot run) and every GPU run before NCCL carries the engine's buffers reduce gradients. On
// one rank nothing travels: the copies a reduce-scatter or all-gather makes stay on the device.
//
// Every collective waits for the device's queued work (the copies do), so it sees the
// gradients the ops computed; async requests run blocking (there is no overlap to gain with
// the host in the middle). Scalar reductions go straight to the inner comm.
#pragma once

#include <memory>

#include "tensor/memory.h"
#include "tensor/ops.h"
#include "zero/dp_comm.h"

namespace ds::zero {

class DeviceStagedComm final : public DpComm {
 public:
  // `inner` works on host memory; `ops` runs where the buffers live.
  DeviceStagedComm(DpComm& inner, tensor::Ops& ops) : inner_(inner), ops_(ops) {}

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  void allreduce(void* data, tensor::DType dtype, int64_t n, Reduction op) override;
  std::unique_ptr<PendingOp> reduce_scatter(const void* full, void* out, tensor::DType dtype,
                                            int64_t piece, Reduction op, Mode mode) override;
  std::unique_ptr<PendingOp> allgather(const void* piece, void* out, tensor::DType dtype, int64_t n,
                                       Mode mode) override;
  double allreduce_sum(double value) override { return inner_.allreduce_sum(value); }
  bool allreduce_any(bool value) override { return inner_.allreduce_any(value); }

 private:
  // Host staging areas that grow once to the largest request (no allocation per step).
  char* staging(tensor::Buffer& buffer, size_t bytes);

  DpComm& inner_;
  tensor::Ops& ops_;
  tensor::Buffer in_, out_;
};

}  // namespace ds::zero
