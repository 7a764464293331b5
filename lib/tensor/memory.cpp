#include "tensor/memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <utility>

#include "util/error.h"

#if defined(DS_WITH_CUDA)
#include "tensor/cuda/device_memory.h"
#endif

namespace ds::tensor {
namespace {

void raise_peak(std::atomic<size_t>& peak, size_t value) {
  size_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

// The live allocations of the emulated device, by start address, for its pointer checks.
struct EmulatedAllocations {
  std::mutex mutex;
  std::map<uintptr_t, size_t> ranges;
};
EmulatedAllocations& emulated_allocations() {
  static EmulatedAllocations allocations;
  return allocations;
}
void note_emulated(const void* p, size_t bytes, bool live) {
  EmulatedAllocations& a = emulated_allocations();
  const std::lock_guard<std::mutex> lock(a.mutex);
  if (live) {
    a.ranges[reinterpret_cast<uintptr_t>(p)] = bytes;
  } else {
    a.ranges.erase(reinterpret_cast<uintptr_t>(p));
  }
}

size_t index_of(MemoryCategory category) {
  const auto i = static_cast<size_t>(category);
  DS_CHECK(i < kNumMemoryCategories, "unknown memory category {}", i);
  return i;
}

}  // namespace

std::string_view memory_category_name(MemoryCategory category) {
  switch (category) {
    case MemoryCategory::kParameters:
      return "parameters";
    case MemoryCategory::kGradients:
      return "gradients";
    case MemoryCategory::kOptimizerState:
      return "optimizer_state";
    case MemoryCategory::kActivations:
      return "activations";
    case MemoryCategory::kCommunication:
      return "communication";
    case MemoryCategory::kNvme:
      return "nvme";
    case MemoryCategory::kOther:
      return "other";
  }
  return "?";
}

MemoryTracker& MemoryTracker::instance() {
  static MemoryTracker tracker;
  return tracker;
}

MemoryTracker& MemoryTracker::device_instance() {
  static MemoryTracker tracker;
  return tracker;
}

void MemoryTracker::add(MemoryCategory category, size_t bytes) {
  const size_t i = index_of(category);
  allocations_.fetch_add(1, std::memory_order_relaxed);
  const size_t now = current_[i].fetch_add(bytes, std::memory_order_relaxed) + bytes;
  raise_peak(peak_[i], now);
  const size_t all = total_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  raise_peak(peak_total_, all);
}

void MemoryTracker::sub(MemoryCategory category, size_t bytes) {
  const size_t i = index_of(category);
  current_[i].fetch_sub(bytes, std::memory_order_relaxed);
  total_.fetch_sub(bytes, std::memory_order_relaxed);
}

size_t MemoryTracker::bytes(MemoryCategory category) const {
  return current_[index_of(category)].load(std::memory_order_relaxed);
}

size_t MemoryTracker::peak(MemoryCategory category) const {
  return peak_[index_of(category)].load(std::memory_order_relaxed);
}

size_t MemoryTracker::total() const { return total_.load(std::memory_order_relaxed); }

size_t MemoryTracker::peak_total() const { return peak_total_.load(std::memory_order_relaxed); }

void MemoryTracker::reset_peaks() {
  for (size_t i = 0; i < kNumMemoryCategories; ++i) {
    peak_[i].store(current_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  peak_total_.store(total_.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

size_t memory_bytes(MemoryCategory category) { return MemoryTracker::instance().bytes(category); }
size_t memory_peak(MemoryCategory category) { return MemoryTracker::instance().peak(category); }
size_t memory_total() { return MemoryTracker::instance().total(); }

Buffer::Buffer(size_t bytes, MemoryCategory category, Device device)
    : bytes_(bytes), category_(category), device_(device) {
  index_of(category);
  if (bytes == 0) return;
  if (device.type == DeviceType::kCuda) {
#if defined(DS_WITH_CUDA)
    data_ = cuda::device_allocate_zeroed(bytes, device.index, memory_category_name(category));
    MemoryTracker::device_instance().add(category_, bytes_);
    return;
#else
    throw UsageError(fmt::format("{} memory on {} was asked for, but this build of dstrain has "
                                 "no CUDA",
                                 memory_category_name(category), device.str()),
                     "rebuild with -DDS_CUDA=ON, or use train.device: cpu");
#endif
  }
  // aligned_alloc wants a multiple of the alignment; the padding is not counted as used.
  const size_t padded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  data_ = std::aligned_alloc(kAlignment, padded);
  if (data_ == nullptr) {
    throw Error(fmt::format("out of memory allocating {} bytes for {}", bytes,
                            memory_category_name(category)),
                "reduce the micro-batch size or model size, or use a higher ZeRO stage");
  }
  std::memset(data_, 0, padded);
  MemoryTracker::of(device_).add(category_, bytes_);
  if (device_.type == DeviceType::kEmulated) note_emulated(data_, bytes_, true);
}

bool in_emulated_device_memory(const void* p) {
  EmulatedAllocations& a = emulated_allocations();
  const std::lock_guard<std::mutex> lock(a.mutex);
  const auto address = reinterpret_cast<uintptr_t>(p);
  auto it = a.ranges.upper_bound(address);
  if (it == a.ranges.begin()) return false;
  --it;
  return address <= it->first + it->second;
}

Buffer::~Buffer() { reset(); }

Buffer Buffer::map_file(const std::filesystem::path& dir, const std::string& stem, size_t bytes) {
  Buffer b;
  b.category_ = MemoryCategory::kNvme;
  if (bytes == 0) return b;
  std::string path = (dir / (stem + "-XXXXXX")).string();
  const int fd = ::mkstemp(path.data());
  if (fd < 0) {
    throw Error(fmt::format("cannot create {}: {}", path, std::strerror(errno)),
                "check that the folder exists and is writable");
  }
  ::unlink(path.c_str());
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(fmt::format("cannot size {} to {} bytes: {}", path, bytes, std::strerror(err)),
                "free space on that disk, or offload to cpu");
  }
  void* data = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file
  if (data == MAP_FAILED) {
    throw Error(fmt::format("cannot map {} ({} bytes): {}", path, bytes, std::strerror(err)));
  }
  b.data_ = data;
  b.bytes_ = bytes;
  b.mapped_ = true;
  MemoryTracker::instance().add(b.category_, bytes);
  return b;
}

Buffer Buffer::pinned(size_t bytes, MemoryCategory category) {
#if defined(DS_WITH_CUDA)
  Buffer b;
  b.category_ = category;
  if (bytes == 0) return b;
  b.data_ = cuda::host_allocate_pinned(bytes, memory_category_name(category));
  b.bytes_ = bytes;
  b.pinned_ = true;
  MemoryTracker::instance().add(category, bytes);
  return b;
#else
  return Buffer(bytes, category);  // nothing copies to a GPU in a build without CUDA
#endif
}

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      category_(other.category_),
      device_(other.device_),
      mapped_(std::exchange(other.mapped_, false)),
      pinned_(std::exchange(other.pinned_, false)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    category_ = other.category_;
    device_ = other.device_;
    mapped_ = std::exchange(other.mapped_, false);
    pinned_ = std::exchange(other.pinned_, false);
  }
  return *this;
}

void Buffer::zero() {
  if (data_ == nullptr) return;
#if defined(DS_WITH_CUDA)
  if (device_.type == DeviceType::kCuda) return cuda::device_zero(data_, bytes_, device_.index);
#endif
  std::memset(data_, 0, bytes_);
}

void Buffer::reset() {
  if (data_ != nullptr) {
    if (mapped_) {
      ::munmap(data_, bytes_);
    } else if (pinned_) {
#if defined(DS_WITH_CUDA)
      cuda::host_free_pinned(data_);
#endif
    } else if (device_.type == DeviceType::kCuda) {
#if defined(DS_WITH_CUDA)
      cuda::device_free(data_, device_.index);
#endif
    } else {
      if (device_.type == DeviceType::kEmulated) note_emulated(data_, bytes_, false);
      std::free(data_);
    }
    MemoryTracker::of(device_).sub(category_, bytes_);
  }
  data_ = nullptr;
  bytes_ = 0;
  mapped_ = false;
  pinned_ = false;
}

void grow_floats(Buffer& buffer, int64_t floats, MemoryCategory category, Device device) {
  const size_t bytes = sizeof(float) * static_cast<size_t>(floats);
  if (buffer.size() < bytes) buffer = Buffer(bytes, category, device);
}

}  // namespace ds::tensor
