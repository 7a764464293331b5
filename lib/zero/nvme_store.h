// ZeRO-Infinity's nvme offload: model states in memory-mapped files under nvme_path
// (tensor::Buffer::map_file), so the kernel keeps them on that disk rather than in RAM.
// The folder is checked when the engine starts, before any training.
#pragma once

#include <filesystem>
#include <string>

#include "tensor/memory.h"

namespace ds::zero {

class NvmeStore {
 public:
  // Throws ds::UsageError (exit 2) naming `key` (the config key it came from) when `dir`
  // is missing, not a folder, or not writable. A relative path is taken from the current
  // directory, as DeepSpeed takes it.
  NvmeStore(std::filesystem::path dir, std::string key, int rank);

  // A zeroed buffer of `bytes` in a file of its own; `name` says what it holds.
  tensor::Buffer allocate(const std::string& name, size_t bytes) const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::string key_;
  int rank_;
};

}  // namespace ds::zero
