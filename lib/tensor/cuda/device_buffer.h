// Owning device memory on the current device, move-only (allocated and freed as tensor::Buffer's
// device memory is, through device_memory.h), and a stream that is destroyed with its owner.
// The op layer's own scratch (TokenBuckets, LtMatmul's workspace) and the tests use it: it
// lives below tensor::Buffer and is not counted by tensor::MemoryTracker.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ds::tensor::cuda {

// Whether `pointer` starts a 16-byte vector access: what cuBLASLt's kernels and the 16-byte
// loads and stores of the kernels here need. cudaMalloc gives 256-byte alignment; a view into a
// buffer keeps it when it starts at a multiple of 16 bytes.
inline bool aligned_16(const void* pointer) {
  return reinterpret_cast<uintptr_t>(pointer) % 16 == 0;
}

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // `bytes` of device memory on the current device, zeroed (as tensor::Buffer is: gradient
  // buffers rely on it because every backward accumulates). Throws ds::Error when it fails.
  explicit DeviceBuffer(size_t bytes);
  static DeviceBuffer floats(int64_t n) { return DeviceBuffer(sizeof(float) * size_t(n)); }
  ~DeviceBuffer();

  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  bool empty() const { return bytes_ == 0; }
  // Replaces this buffer with a zeroed one of `bytes` when it is smaller (its contents are then
  // lost). Freeing the old memory waits for the device (device_free), so kernels still queued to
  // read it finish first.
  void grow(size_t bytes) {
    if (bytes_ < bytes) *this = DeviceBuffer(bytes);
  }

  // Copies `bytes` (at most bytes()) from host memory, ordered on `stream`; returns when the
  // host memory may be reused (pageable memory is staged by the driver).
  void upload(const void* host, size_t bytes, cudaStream_t stream);
  // Copies `bytes` to host memory and waits for `stream`, so the data is there on return.
  void download(void* host, size_t bytes, cudaStream_t stream) const;

 private:
  void release() noexcept;

  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

// A non-blocking stream on the current device, destroyed with this object.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  cudaStream_t get() const { return stream_; }
  void synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace ds::tensor::cuda
