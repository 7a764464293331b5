#include "worker/gpu_sharing.h"

#include <fmt/format.h>

#include <algorithm>

#include "util/error.h"

#if defined(DS_WITH_CUDA)
#include "tensor/cuda/device_info.h"
#endif

namespace ds::worker {
namespace {

bool wants_nccl(const DeviceChoice& device) {
  return device.device.type == tensor::DeviceType::kCuda && device.backend == comm::Backend::kNccl;
}

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

std::optional<int> claim_gpu(comm::Store& store, const std::string& uuid, int rank) {
  const std::optional<std::string> first = claim(store, "gpu/" + uuid, std::to_string(rank));
  if (!first) return std::nullopt;
  return std::stoi(*first);
}

std::optional<std::string> nccl_obstacle(const DeviceChoice& device, const std::string& uuid,
                                         std::optional<int> sharer, int rank) {
  if (device.device.type != tensor::DeviceType::kCuda) {
    return fmt::format("rank {} computes on the {}", rank,
                       device.device.is_cpu() ? "CPU" : "emulated device");
  }
  if (device.backend != comm::Backend::kNccl) {
    return fmt::format("rank {} has DS_COMM_BACKEND={}", rank, comm::backend_name(device.backend));
  }
  // Lower rank first: which of the two claimed the GPU first is a race.
  if (sharer) {
    return fmt::format("ranks {} and {} share {}", std::min(*sharer, rank), std::max(*sharer, rank),
                       uuid);
  }
  return std::nullopt;
}

GpuBufferPath agree_gpu_buffer_path(const DeviceChoice& device, const std::string& uuid,
                                    comm::Backend asked, comm::Store& store, zero::DpComm& world) {
  const int rank = world.rank();
  std::optional<int> sharer;
  if (wants_nccl(device)) {
    DS_CHECK(!uuid.empty(), "rank {} on {} has no GPU UUID", rank, device.device.str());
    sharer = claim_gpu(store, uuid, rank);
  }
  const std::optional<std::string> obstacle = nccl_obstacle(device, uuid, sharer, rank);
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

std::string gpu_uuid(const tensor::Device& device) {
  if (device.type != tensor::DeviceType::kCuda) return "";
#if defined(DS_WITH_CUDA)
  return tensor::cuda::device_uuid(device.index);
#else
  DS_CHECK(false, "{} in a build without CUDA", device.str());
  return "";
#endif
}

}  // namespace ds::worker
