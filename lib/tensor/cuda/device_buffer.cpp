#include "tensor/cuda/device_buffer.h"

#include <utility>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/device_memory.h"
#include "util/error.h"

namespace ds::tensor::cuda {

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  if (cudaGetDevice(&device_) != cudaSuccess) cudaGetLastError();  // the allocation says why
  data_ = device_allocate_zeroed(bytes, device_, "a device buffer");
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(other.device_) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
  }
  return *this;
}

void DeviceBuffer::release() noexcept {
  if (data_ != nullptr) device_free(data_, device_);
  data_ = nullptr;
  bytes_ = 0;
}

void DeviceBuffer::upload(const void* host, size_t bytes, cudaStream_t stream) {
  DS_CHECK(bytes <= bytes_, "upload of {} bytes into a device buffer of {}", bytes, bytes_);
  if (bytes == 0) return;
  DS_CUDA_CALL(cudaMemcpyAsync(data_, host, bytes, cudaMemcpyHostToDevice, stream));
}

void DeviceBuffer::download(void* host, size_t bytes, cudaStream_t stream) const {
  DS_CHECK(bytes <= bytes_, "download of {} bytes from a device buffer of {}", bytes, bytes_);
  if (bytes != 0) {
    DS_CUDA_CALL(cudaMemcpyAsync(host, data_, bytes, cudaMemcpyDeviceToHost, stream));
  }
  DS_CUDA_CALL(cudaStreamSynchronize(stream));
}

Stream::Stream() { DS_CUDA_CALL(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }

Stream::~Stream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void Stream::synchronize() const { DS_CUDA_CALL(cudaStreamSynchronize(stream_)); }

}  // namespace ds::tensor::cuda
