#include "worker/gpu_sharing.h"

#include <fmt/format.h>

#include <algorithm>

#include "comm/host_identity.h"
#include "util/error.h"

#if defined(DS_WITH_CUDA)
#include "tensor/cuda/device_info.h"
#endif

namespace ds::worker {
namespace {

// Claims `key` for `value`: the first caller's value stays under key/first. Returns nullopt to
// the first caller and the first value to every later one.
std::optional<std::string> claim(comm::Store& store, const std::string& key,
                                 const std::string& value) {
  if (store.add(key + "/claims", 1) == 1) {
    store.set(key + "/first", value);
    return std::nullopt;
  }
  return store.get(key + "/first");
}

}  // namespace

std::optional<GpuSharer> claim_gpu(comm::Store& store, const GpuIdentity& gpu, int rank) {
  const std::string key = fmt::format("gpu/{}/{}", gpu.host, gpu.pci_bus_id);
  const std::optional<std::string> first = claim(store, key, fmt::format("{} {}", rank, gpu.uuid));
  if (!first) return std::nullopt;
  const size_t space = first->find(' ');
  return GpuSharer{std::stoi(first->substr(0, space)), first->substr(space + 1) == gpu.uuid};
}

std::optional<std::string> nccl_obstacle(const DeviceChoice& device, const GpuIdentity& gpu,
                                         std::optional<GpuSharer> sharer, int rank) {
  if (device.device.type != tensor::DeviceType::kCuda) {
    return fmt::format("rank {} computes on the {}", rank,
                       device.device.is_cpu() ? "CPU" : "emulated device");
  }
  if (device.backend != comm::Backend::kNccl) {
    return fmt::format("rank {} has DS_COMM_BACKEND={}", rank, comm::backend_name(device.backend));
  }
  if (!sharer) return std::nullopt;
  // Lower rank first: which of the two claimed the GPU first is a race.
  const int low = std::min(sharer->rank, rank);
  const int high = std::max(sharer->rank, rank);
  if (sharer->same_uuid) return fmt::format("ranks {} and {} share {}", low, high, gpu.uuid);
  // Different UUIDs at one address of one host: MIG, or a host name that is not one machine's.
  return fmt::format(
      "ranks {} and {} have GPUs at one PCI address ({}) of what NCCL takes for one host: MIG "
      "slices of one GPU, or one NCCL_HOSTID on two machines",
      low, high, gpu.pci_bus_id);
}

GpuBufferPath agree_gpu_buffer_path(const DeviceChoice& device, const GpuIdentity& gpu,
                                    comm::Backend asked, comm::Store& store, zero::DpComm& world) {
  const int rank = world.rank();
  std::optional<GpuSharer> sharer;
  // Only a rank that nothing else keeps from NCCL claims its GPU.
  if (!nccl_obstacle(device, gpu, std::nullopt, rank)) {
    DS_CHECK(!gpu.uuid.empty() && !gpu.pci_bus_id.empty(), "rank {} on {} has no GPU identity",
             rank, device.device.str());
    sharer = claim_gpu(store, gpu, rank);
  }
  const std::optional<std::string> obstacle = nccl_obstacle(device, gpu, sharer, rank);
  // The first rank to find an obstacle leaves it for every rank's messages.
  if (obstacle) claim(store, "gpu/obstacle", *obstacle);

  GpuBufferPath path;
  path.nccl = !world.allreduce_any(obstacle.has_value());
  if (path.nccl) return path;
  path.why_staged = store.get("gpu/obstacle/first");
  if (asked == comm::Backend::kNccl) {
    throw UsageError(
        fmt::format("DS_COMM_BACKEND=nccl, but {}: NCCL moves GPU memory only, and refuses two "
                    "ranks on one GPU",
                    path.why_staged),
        "give every rank a GPU of its own (dslaunch --num_gpus at most the GPUs a node has), or "
        "leave DS_COMM_BACKEND unset: ranks sharing a GPU then fall back to Gloo over host "
        "memory");
  }
  return path;
}

std::string nccl_host(const EnvMap& env) {
  if (const auto id = env.find("NCCL_HOSTID"); id != env.end()) return id->second;
  return fmt::format("{}|{}", comm::host_name(), comm::kernel_boot_id());
}

GpuIdentity gpu_identity(const tensor::Device& device, const EnvMap& env) {
  if (device.type != tensor::DeviceType::kCuda) return {};
#if defined(DS_WITH_CUDA)
  return {tensor::cuda::device_uuid(device.index), tensor::cuda::device_pci_bus_id(device.index),
          nccl_host(env)};
#else
  DS_CHECK(false, "{} in a build without CUDA", device.str());
  return {};
#endif
}

}  // namespace ds::worker
