#include "worker/device_choice.h"

#include <fmt/format.h>

#include "util/error.h"

#if defined(DS_WITH_CUDA)
#include "tensor/cuda/device_info.h"
#endif

namespace ds::worker {
namespace {

// Quoted when empty: CUDA_VISIBLE_DEVICES="" hides every GPU, and a bare "=" reads as a typo.
std::string visible_variable(const std::string& value) {
  return fmt::format("CUDA_VISIBLE_DEVICES={}", value.empty() ? "\"\"" : value);
}

std::string no_device(const DeviceRequest& request) {
  std::string text =
      request.no_device_reason.empty() ? "the CUDA runtime reports none" : request.no_device_reason;
  if (request.cuda_visible_devices) text += ", " + visible_variable(*request.cuda_visible_devices);
  return text;
}

DeviceChoice on_cpu(const DeviceRequest& request) {
  const std::string why = request.device == config::Device::kCpu
                              ? std::string("train.device: cpu")
                              : "train.device: auto, no CUDA device: " + no_device(request);
  if (request.backend == comm::Backend::kNccl) {
    throw UsageError(
        fmt::format("DS_COMM_BACKEND=nccl, but this rank computes on the CPU ({})", why),
        "NCCL moves GPU memory only: on the CPU leave DS_COMM_BACKEND unset or use gloo or shm");
  }
  // kAuto stays kAuto: the factory picks shared memory or Gloo once it sees where the ranks are.
  return {tensor::Device::cpu(), false, request.backend, fmt::format("cpu ({})", why)};
}

}  // namespace

DeviceChoice choose_device(const DeviceRequest& request) {
  const int ranks = request.local_world_size;
  if (ranks < 1) {
    throw UsageError(fmt::format("LOCAL_WORLD_SIZE is {}; a node runs at least one rank", ranks),
                     "the launcher sets LOCAL_WORLD_SIZE to the number of ranks on this node");
  }
  if (request.local_rank < 0 || request.local_rank >= ranks) {
    throw UsageError(fmt::format("LOCAL_RANK {0} is outside [0, {1}) (LOCAL_WORLD_SIZE={1})",
                                 request.local_rank, ranks),
                     "LOCAL_RANK numbers this node's ranks from 0; check the launcher's "
                     "environment for this rank");
  }
  DS_CHECK(request.visible_devices >= 0, "{} visible CUDA devices", request.visible_devices);

  if (request.device == config::Device::kCpu) return on_cpu(request);
  const int gpus = request.visible_devices;
  if (gpus == 0) {
    if (request.device == config::Device::kAuto) return on_cpu(request);
    throw UsageError(
        fmt::format("train.device: cuda, but no CUDA device is visible: {}", no_device(request)),
        "use train.device: auto or cpu to train on the CPU, or run where nvidia-smi lists a GPU "
        "and CUDA_VISIBLE_DEVICES (when set) names it");
  }

  std::string where = fmt::format("LOCAL_RANK {} of {}", request.local_rank, ranks);
  if (request.cuda_visible_devices) where += ", " + visible_variable(*request.cuda_visible_devices);

  // torchrun's and DeepSpeed's rule: one rank per GPU, the GPU numbered like the rank. With more
  // ranks than visible GPUs they are dealt round-robin: either the node runs more ranks than it
  // has GPUs (--num_gpus above what is installed), or each rank sees only its own (Slurm's
  // --gpus-per-task). Only the GPUs' PCI addresses tell the two apart, after the ranks meet
  // (worker/gpu_sharing.h).
  DeviceChoice choice;
  choice.round_robin = ranks > gpus;
  choice.device = tensor::Device::cuda(request.local_rank % gpus);
  choice.backend = request.backend == comm::Backend::kAuto ? comm::Backend::kNccl : request.backend;
  if (choice.round_robin) {
    where += fmt::format(", {} GPU{} visible: dealt round-robin", gpus, gpus == 1 ? "" : "s");
  }
  choice.summary = fmt::format("{} ({})", choice.device.str(), where);
  return choice;
}

VisibleDevices query_visible_devices() {
#if defined(DS_WITH_CUDA)
  const tensor::cuda::DeviceInfo info = tensor::cuda::query_devices();
  if (info.device_count > 0) return {info.device_count, ""};
  return {0, info.error.empty() ? "the CUDA runtime reports no device" : info.error};
#else
  return {0, "this build has no CUDA (rebuild with -DDS_CUDA=ON where the CUDA toolkit is)"};
#endif
}

}  // namespace ds::worker
