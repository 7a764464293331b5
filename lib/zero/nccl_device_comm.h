// The data-parallel collectives on GPU buffers over NCCL, for ranks that each have a GPU of
// their own (worker/device_choice.h). Each collective runs on the NCCL group's communication
// stream after the work the rank's compute stream (its tensor::Ops) had queued when it was
// issued: an event orders the two, so issuing one never waits for the GPU. An async request
// (overlap_comm's buckets, stage 3's prefetch) then moves the bytes while the compute stream
// runs the layers queued after it; wait() returns once they have arrived (or fails after the
// collective timeout, naming the rank that died).
//
// NCCL reduces bf16 and f16 in their own precision, where the host backends accumulate in fp32
// and round once: sums over many ranks can differ from theirs in the last bits.
#pragma once

#include <memory>

#include "comm/process_group.h"
#include "tensor/ops.h"
#include "zero/dp_comm.h"

namespace ds::zero {

// Makes `group`, an NCCL group on ops.device() (ProcessGroup::new_group with Backend::kNccl),
// start each later operation after the work queued on ops' compute stream by then. Throws
// ds::Error for another kind of group or Ops, and in a build without NCCL.
void follow_compute_stream(comm::ProcessGroup& group, tensor::Ops& ops);

// DpComm over such a group, on buffers of ops.device(), after follow_compute_stream.
std::unique_ptr<DpComm> make_nccl_device_comm(std::shared_ptr<comm::ProcessGroup> group,
                                              tensor::Ops& ops);

}  // namespace ds::zero
