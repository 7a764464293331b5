// Device memory for tensor::Buffer (tensor/memory.cpp), behind a plain C++ interface so that
// ds_tensor's host code needs no CUDA headers. Nothing is allocated inside a training step after
// the first, so these synchronise freely.
#pragma once

#include <cstddef>
#include <string_view>

namespace ds::tensor::cuda {

// `bytes` of zeroed memory on device `device`; throws ds::Error naming `what` and the sizes
// when the device is out of memory.
void* device_allocate_zeroed(size_t bytes, int device, std::string_view what);
// Never throws (destructors call it); waits for the device's queued work first.
void device_free(void* data, int device) noexcept;
void device_zero(void* data, size_t bytes, int device);

// Page-locked host memory (cudaMallocHost), zeroed: copies between it and a device run at full
// speed and without a staging copy by the driver. Throws ds::Error naming `what`.
void* host_allocate_pinned(size_t bytes, std::string_view what);
void host_free_pinned(void* data) noexcept;

}  // namespace ds::tensor::cuda
