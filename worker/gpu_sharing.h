// Whether a run's collectives move GPU buffers over NCCL or stage them through host memory,
// agreed by every rank. NCCL refuses two ranks of one communicator on one GPU, and device numbers
// cannot tell whether two ranks share one: each rank's CUDA_VISIBLE_DEVICES may number the GPUs
// its own way (Slurm's --gpus-per-task shows every task its own GPU as cuda:0, while four ranks
// on a node with two GPUs all see both). The GPUs' UUIDs can: each rank claims its GPU's UUID in
// the run's store, and the first to claim one learns nothing, the later ones who came before.
#pragma once

#include <optional>
#include <string>

#include "comm/store.h"
#include "worker/device_choice.h"
#include "zero/dp_comm.h"

namespace ds::worker {

// Records in `store` that `rank` computes on the GPU `uuid`, and returns the rank that claimed
// it first when that was another. One or two requests per rank, whatever the run's size.
std::optional<int> claim_gpu(comm::Store& store, const std::string& uuid, int rank);

// What keeps this rank from NCCL, as the log says it ("ranks 0 and 2 share GPU-…"): computing off
// the GPU, another backend asked for, or a GPU shared with `sharer`. nullopt: nothing does.
std::optional<std::string> nccl_obstacle(const DeviceChoice& device, const std::string& uuid,
                                         std::optional<int> sharer, int rank);

struct GpuBufferPath {
  bool nccl = false;
  std::string why_staged;  // when !nccl: the first obstacle a rank reported
};

// Collective over `world` (every rank of the run, `store` being the run's): NCCL when no rank
// reports an obstacle. `uuid` is this rank's GPU's (gpu_uuid). Throws UsageError on every rank,
// naming the obstacle, when `asked` is kNccl (DS_COMM_BACKEND=nccl) and the run cannot use it.
GpuBufferPath agree_gpu_buffer_path(const DeviceChoice& device, const std::string& uuid,
                                    comm::Backend asked, comm::Store& store, zero::DpComm& world);

// The live input: the UUID of the GPU `device` names (tensor/cuda/device_info.h); "" for a
// device that is not a GPU.
std::string gpu_uuid(const tensor::Device& device);

}  // namespace ds::worker
