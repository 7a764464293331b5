// Whether a run's collectives move GPU buffers over NCCL or stage them through host memory,
// agreed by every rank. NCCL refuses two ranks of one communicator on one GPU, and device numbers
// cannot tell whether two ranks share one: each rank's CUDA_VISIBLE_DEVICES may number the GPUs
// its own way (Slurm's --gpus-per-task shows every task its own GPU as cuda:0, while four ranks
// on a node with two GPUs all see both). NCCL itself tells GPUs apart by their PCI address on a
// host, a host being what NCCL_HOSTID names or else the host name and the kernel's boot id; the
// ranks apply the same rule, so that they stage exactly where NCCL would refuse. That catches two
// MIG slices of one GPU too, which have UUIDs of their own. Each rank claims its GPU in the run's
// store; the first to claim one learns nothing, the later ones who came before.
#pragma once

#include <optional>
#include <string>

#include "comm/store.h"
#include "worker/device_choice.h"
#include "worker/env_contract.h"
#include "zero/dp_comm.h"

namespace ds::worker {

// The GPU a rank computes on, as the ranks compare it.
struct GpuIdentity {
  std::string uuid;        // "GPU-…" as nvidia-smi -L prints it (a MIG slice has its own)
  std::string pci_bus_id;  // "0000:65:00.0": the physical GPU, common to its MIG slices
  std::string host;        // the host as NCCL tells hosts apart (nccl_host)
};

struct GpuSharer {
  int rank = 0;
  bool same_uuid = true;  // false: another MIG slice of the GPU (or one NCCL_HOSTID on two hosts)
};

// Records in `store` that `rank` computes on `gpu`, and returns the rank that claimed that GPU
// (or another slice of it) first when that was another. One or two requests per rank, whatever
// the run's size.
std::optional<GpuSharer> claim_gpu(comm::Store& store, const GpuIdentity& gpu, int rank);

// What keeps this rank from NCCL, as the log says it ("ranks 0 and 2 share GPU-…"): computing off
// the GPU, another backend asked for, or a GPU shared with `sharer`. nullopt: nothing does.
std::optional<std::string> nccl_obstacle(const DeviceChoice& device, const GpuIdentity& gpu,
                                         std::optional<GpuSharer> sharer, int rank);

struct GpuBufferPath {
  bool nccl = false;
  std::string why_staged;  // when !nccl: the first obstacle a rank reported
};

// Collective over `world` (every rank of the run, `store` being the run's): NCCL when no rank
// reports an obstacle. `gpu` is this rank's (gpu_identity). Throws UsageError on every rank,
// naming the obstacle, when `asked` is kNccl (DS_COMM_BACKEND=nccl) and the run cannot use it.
GpuBufferPath agree_gpu_buffer_path(const DeviceChoice& device, const GpuIdentity& gpu,
                                    comm::Backend asked, comm::Store& store, zero::DpComm& world);

// The host as NCCL tells hosts apart when it looks for two ranks on one GPU: NCCL_HOSTID when
// set, else the host name and the kernel's boot id.
std::string nccl_host(const EnvMap& env);

// The live input: the identity of the GPU `device` names (tensor/cuda/device_info.h) on the host
// `env` makes (nccl_host); empty for a device that is not a GPU.
GpuIdentity gpu_identity(const tensor::Device& device, const EnvMap& env);

}  // namespace ds::worker
