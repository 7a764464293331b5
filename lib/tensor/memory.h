// Memory accounting by category. Every byte a training run holds lives in a Buffer that
// names what it is for, so a rank can report parameters vs. gradients vs. optimizer state
// vs. activations, and tests can check that ZeRO stages really shrink the right ones.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "tensor/device.h"

namespace ds::tensor {

enum class MemoryCategory : uint8_t {
  kParameters,
  kGradients,
  kOptimizerState,
  kActivations,
  kCommunication,
  kNvme,  // model states in memory-mapped files (ZeRO-Infinity offload): disk, not RAM
  kOther,
};
inline constexpr int kNumMemoryCategories = 7;

std::string_view memory_category_name(MemoryCategory category);  // "parameters", ...

// Process-wide counters of current and peak bytes per category. Lock-free: buffers are
// created from many threads (ranks run as threads in tests), and only counters change.
// Host memory and device memory are counted apart: a rank runs on one device.
class MemoryTracker {
 public:
  static MemoryTracker& instance();         // host memory
  static MemoryTracker& device_instance();  // CUDA device memory
  static MemoryTracker& of(const Device& device) {
    return device.is_cpu() ? instance() : device_instance();
  }

  void add(MemoryCategory category, size_t bytes);
  void sub(MemoryCategory category, size_t bytes);

  size_t bytes(MemoryCategory category) const;
  size_t peak(MemoryCategory category) const;
  size_t total() const;       // current bytes over all categories
  size_t peak_total() const;  // the highest total seen, not the sum of per-category peaks
  // Lowers every peak to the current value, e.g. to measure one training step.
  void reset_peaks();
  // How many allocations were registered so far: one per Buffer's memory. A training step
  // after the first must not add any (DESIGN.md: no allocation inside a step).
  size_t allocations() const { return allocations_.load(std::memory_order_relaxed); }

 private:
  MemoryTracker() = default;

  std::array<std::atomic<size_t>, kNumMemoryCategories> current_{};
  std::array<std::atomic<size_t>, kNumMemoryCategories> peak_{};
  std::atomic<size_t> total_{0};
  std::atomic<size_t> peak_total_{0};
  std::atomic<size_t> allocations_{0};
};

// Shorthands for MemoryTracker::instance().
size_t memory_bytes(MemoryCategory category);
size_t memory_peak(MemoryCategory category);
size_t memory_total();

// Owning, 64-byte aligned memory on the host or a CUDA device, registered with that device's
// tracker for its lifetime. Zeroed on allocation: gradient buffers rely on it because every
// backward kernel accumulates. Move-only. Device memory is for ops (tensor/ops.h) only: the
// host must not read or write through data() of a buffer whose device() is not the CPU.
class Buffer {
 public:
  static constexpr size_t kAlignment = 64;

  Buffer() = default;
  // On a CUDA device: throws ds::UsageError in a build without CUDA, ds::Error when the
  // device is out of memory.
  Buffer(size_t bytes, MemoryCategory category, Device device = Device::cpu());
  ~Buffer();

  // n floats.
  static Buffer floats(int64_t n, MemoryCategory category, Device device = Device::cpu()) {
    return Buffer(sizeof(float) * static_cast<size_t>(n), category, device);
  }

  // `bytes` of zeros in a new file under `dir` (named after `stem`), mapped into memory
  // and tracked as kNvme: the kernel pages it to that disk. The file is unlinked at once,
  // so its space comes back when the buffer (or the process, however it ends) goes away.
  // Throws ds::Error naming the file when it cannot be created, sized or mapped.
  static Buffer map_file(const std::filesystem::path& dir, const std::string& stem, size_t bytes);

  // `bytes` of zeroed host memory that a CUDA device copies to and from directly (page-locked:
  // tensor::Ops::allocate_staging on a GPU). Counted as host memory under `category`.
  static Buffer pinned(size_t bytes, MemoryCategory category);

  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }
  size_t size() const { return bytes_; }
  bool empty() const { return bytes_ == 0; }
  MemoryCategory category() const { return category_; }
  Device device() const { return device_; }

  void zero();
  // Frees the memory now (and unregisters it); the buffer becomes empty.
  void reset();

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  MemoryCategory category_ = MemoryCategory::kOther;
  Device device_;
  bool mapped_ = false;  // munmap instead of free
  bool pinned_ = false;  // cudaFreeHost instead of free
};

// Whether `p` points into (or just past) a live buffer on the emulated device: its Ops check
// every pointer they are given (tensor/device.h).
bool in_emulated_device_memory(const void* p);

// Makes `buffer` hold at least `floats` floats on `device`, replacing it with a new zeroed
// buffer of exactly that size when it is smaller (its contents are then lost). Buffers that
// only grow allocate nothing once they have seen the largest size.
void grow_floats(Buffer& buffer, int64_t floats, MemoryCategory category, Device device);

}  // namespace ds::tensor
