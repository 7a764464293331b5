// The data-parallel collectives on buffers that live on a device, over a DpComm that moves host
// memory (Gloo or shared memory between processes): each collective copies its input to host
// memory, runs there, and copies the result back. That is how ranks sharing one GPU (where NCCL
// cannot run) and every GPU run before NCCL carries the engine's buffers reduce gradients. On
// one rank nothing travels: the copies a reduce-scatter or all-gather makes stay on the device.
//
// Copying the input out waits for the device's queued work, so the collective sees what the
// ops computed. An async request (overlap_comm's buckets, stage 3's prefetch) then runs the
// host collective in the background while the caller queues more work on the device; wait()
// copies the result back. Each collective in flight has host staging of its own, from a pool
// that grows to the most ever in flight at once (no allocation once a step has run). Scalar
// reductions go straight to the inner comm.
#pragma once

#include <memory>
#include <vector>

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
  // Host staging for one collective: grows to the largest request it serves.
  struct Staging {
    tensor::Buffer in, out;  // page-locked on a GPU (ops_.allocate_staging)
    bool busy = false;
  };
  class StagedOp;
  Staging& acquire();
  // Copies `in_bytes` of device_in to host staging and runs start(host_in, host_out), which
  // starts the host collective from the staging's input into its output (the same buffer when
  // `in_place`); the staging goes back to the pool if that throws. The result, `out_bytes`, is
  // copied to device_out when the op is waited for (at once for a blocking one).
  template <typename Start>
  std::unique_ptr<PendingOp> staged(const void* device_in, size_t in_bytes, void* device_out,
                                    size_t out_bytes, bool in_place, Mode mode, Start&& start);

  DpComm& inner_;
  tensor::Ops& ops_;
  std::vector<std::unique_ptr<Staging>> pool_;
};

}  // namespace ds::zero
