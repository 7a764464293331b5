// Which device a dsworker rank computes on and which backend its groups use, with torchrun's
// and DeepSpeed's semantics: rank LOCAL_RANK of a node takes GPU LOCAL_RANK of those
// CUDA_VISIBLE_DEVICES leaves visible. The decision is a pure function of what the rank knows,
// so every case is testable without a GPU; query_visible_devices() is the one live input.
#pragma once

#include <optional>
#include <string>

#include "comm/process_group.h"
#include "config/train_config.h"
#include "tensor/tensor.h"

namespace ds::worker {

struct DeviceRequest {
  config::Device device = config::Device::kAuto;  // train.device
  comm::Backend backend = comm::Backend::kAuto;   // asked for (DS_COMM_BACKEND); kAuto: not asked
  int local_rank = 0;                             // LOCAL_RANK
  int local_world_size = 1;                       // LOCAL_WORLD_SIZE
  int visible_devices = 0;  // CUDA devices this process sees; CUDA_VISIBLE_DEVICES already applied
  // For messages only.
  std::optional<std::string> cuda_visible_devices;  // the variable's value; nullopt: unset
  std::string no_device_reason;                     // the CUDA runtime's, when visible_devices is 0
};

struct DeviceChoice {
  tensor::Device device;
  // More ranks on this node than visible GPUs: the GPUs were dealt round-robin. The ranks may
  // share them or may each see a GPU of their own; worker/gpu_sharing.h finds out which.
  bool round_robin = false;
  // kAuto on the CPU (the factory picks shm or Gloo); on a GPU the one asked for, else kNccl,
  // which the run takes for GPU buffers only if no rank shares its GPU (worker/gpu_sharing.h).
  comm::Backend backend = comm::Backend::kAuto;
  // One line for the log: "cuda:1 (LOCAL_RANK 1 of 2, ...)"; says when GPUs were dealt.
  std::string summary;
};

// Pure: no CUDA calls. Throws UsageError for train.device: cuda without a visible GPU, for nccl
// asked for on the CPU, and for a LOCAL_RANK outside [0, LOCAL_WORLD_SIZE).
DeviceChoice choose_device(const DeviceRequest& request);

struct VisibleDevices {
  int count = 0;
  std::string reason;  // why there are none, when count is 0
};

// What the CUDA runtime of this process sees; {0, "this build has no CUDA ..."} in a build
// without CUDA.
VisibleDevices query_visible_devices();

}  // namespace ds::worker
