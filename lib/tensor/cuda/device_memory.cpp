#include "tensor/cuda/device_memory.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <cstring>

#include "tensor/cuda/cuda_check.h"
#include "util/error.h"

namespace ds::tensor::cuda {
namespace {

// Buffers of any device may be made from any thread: the device is selected for the call and
// the thread's current device put back afterwards, so a later launch goes where it went before.
class OnDevice {
 public:
  // Without a usable driver there is no current device to keep: the call that follows fails
  // and names itself.
  explicit OnDevice(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      previous_ = device;
    }
    if (previous_ != device) DS_CUDA_CALL(cudaSetDevice(device));
  }
  ~OnDevice() { cudaSetDevice(previous_); }
  OnDevice(const OnDevice&) = delete;
  OnDevice& operator=(const OnDevice&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace

void* device_allocate_zeroed(size_t bytes, int device, std::string_view what) {
  const OnDevice on(device);
  void* data = nullptr;
  const cudaError_t result = cudaMalloc(&data, bytes);
  if (result == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear it: out of memory is not sticky
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    throw Error(fmt::format("cudaMalloc: out of memory on cuda:{} allocating {} bytes for {} ({} "
                            "of {} bytes free)",
                            device, bytes, what, free_bytes, total_bytes),
                "reduce the micro-batch size or model size, or use a higher ZeRO stage");
  }
  if (result != cudaSuccess) detail::cuda_failed(__FILE__, __LINE__, "cudaMalloc", result);
  // Zeroed before returning, on the legacy default stream, which the project's non-blocking
  // streams do not wait for: synchronise so that no later op can see the memory unzeroed.
  DS_CUDA_CALL(cudaMemsetAsync(data, 0, bytes, nullptr));
  DS_CUDA_CALL(cudaStreamSynchronize(nullptr));
  return data;
}

void device_free(void* data, int device) noexcept {
  // Statuses are dropped: this runs in destructors, and a sticky error from an earlier fault
  // has been (or will be) reported by the call that saw it. The device is synchronised first:
  // kernels still queued on any stream may read the memory (a workspace replaced by a larger one
  // in the middle of a step), and cudaFree's own wait is not promised by its documentation.
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device);
  cudaDeviceSynchronize();
  cudaFree(data);
  cudaSetDevice(previous);
}

void device_zero(void* data, size_t bytes, int device) {
  const OnDevice on(device);
  // Ops queue on non-blocking streams, which the default stream does not wait for: wait for
  // the whole device first, so no queued op still reads or writes this memory.
  DS_CUDA_CALL(cudaDeviceSynchronize());
  DS_CUDA_CALL(cudaMemset(data, 0, bytes));
  DS_CUDA_CALL(cudaDeviceSynchronize());
}

void* host_allocate_pinned(size_t bytes, std::string_view what) {
  void* data = nullptr;
  const cudaError_t result = cudaMallocHost(&data, bytes);
  if (result != cudaSuccess) {
    cudaGetLastError();
    throw Error(fmt::format("cannot pin {} bytes of host memory for {}: {}", bytes, what,
                            cudaGetErrorString(result)),
                "reduce the batch or bucket sizes, or raise the locked-memory limit (ulimit -l)");
  }
  std::memset(data, 0, bytes);
  return data;
}

void host_free_pinned(void* data) noexcept { cudaFreeHost(data); }

}  // namespace ds::tensor::cuda
