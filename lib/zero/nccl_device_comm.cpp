#include "zero/nccl_device_comm.h"

#include "util/error.h"
#include "zero/process_group_comm.h"

#if defined(DS_WITH_CUDA)
#include "comm/nccl/nccl_process_group.h"
#include "tensor/cuda/cuda_ops.h"
#endif

namespace ds::zero {

void follow_compute_stream(comm::ProcessGroup& group, tensor::Ops& ops) {
#if defined(DS_WITH_CUDA)
  auto* nccl = dynamic_cast<comm::NcclProcessGroup*>(&group);
  auto* cuda = dynamic_cast<tensor::cuda::CudaOps*>(&ops);
  DS_CHECK(nccl != nullptr && cuda != nullptr,
           "NCCL device collectives need an NCCL group and CUDA ops (got {} on {})",
           group.backend(), ops.device().str());
  DS_CHECK(nccl->context().cuda_device == ops.device().index,
           "NCCL group '{}' is on GPU {}, the model on {}", group.name(),
           nccl->context().cuda_device, ops.device().str());
  nccl->follow(cuda->stream());
#else
  (void)ops;
  throw Error(fmt::format("group '{}': this build of dstrain has no NCCL", group.name()),
              "rebuild with -DDS_CUDA=ON on a machine with the CUDA toolkit and NCCL");
#endif
}

std::unique_ptr<DpComm> make_nccl_device_comm(std::shared_ptr<comm::ProcessGroup> group,
                                              tensor::Ops& ops) {
  // The tensors are made by the compute stream: each collective starts after its work.
  follow_compute_stream(*group, ops);
  return std::make_unique<ProcessGroupComm>(std::move(group), ops);
}

}  // namespace ds::zero
