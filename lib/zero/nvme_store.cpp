#include "zero/nvme_store.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace ds::zero {

NvmeStore::NvmeStore(std::filesystem::path dir, std::string key, int rank)
    : dir_(std::move(dir)), key_(std::move(key)), rank_(rank) {
  std::error_code ec;
  const auto status = std::filesystem::status(dir_, ec);
  if (!std::filesystem::exists(status)) {
    throw UsageError(fmt::format("{}: {} does not exist", key_, dir_.string()),
                     "create the folder (on a fast local disk) or point nvme_path at one");
  }
  if (!std::filesystem::is_directory(status)) {
    throw UsageError(fmt::format("{}: {} is not a folder", key_, dir_.string()),
                     "nvme_path names a folder that will hold the offloaded state");
  }
  // Writability as this process sees it (root ignores permission bits, a read-only
  // mount does not): create and remove a probe file.
  std::string probe = (dir_ / fmt::format(".dstrain-probe-{}-XXXXXX", rank_)).string();
  const int fd = ::mkstemp(probe.data());
  if (fd < 0) {
    throw UsageError(
        fmt::format("{}: cannot write in {}: {}", key_, dir_.string(), std::strerror(errno)),
        "choose a folder this user can write to");
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

tensor::Buffer NvmeStore::allocate(const std::string& name, size_t bytes) const {
  return tensor::Buffer::map_file(dir_, fmt::format("dstrain-rank{}-{}", rank_, name), bytes);
}

}  // namespace ds::zero
