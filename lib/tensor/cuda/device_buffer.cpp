#include "tensor/cuda/device_buffer.h"

#include <utility>

#include "tensor/cuda/cuda_check.h"
#include "util/error.h"

namespace ds::tensor::cuda {

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  DS_CUDA_CALL(cudaMalloc(&data_, bytes));
  // Zeroed before the constructor returns: cudaMemset may run asynchronously on the default
  // stream, which non-blocking streams (Stream) do not wait for, so a later copy on one of
  // them could otherwise land before the zeros. Allocation is rare (never inside a step).
  DS_CUDA_CALL(cudaMemsetAsync(data_, 0, bytes, nullptr));
  DS_CUDA_CALL(cudaStreamSynchronize(nullptr));
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::release() noexcept {
  // cudaFree's status is dropped: a destructor must not throw, and a sticky error from an
  // earlier fault has already been (or will be) reported by the call that saw it.
  if (data_ != nullptr) cudaFree(data_);
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
