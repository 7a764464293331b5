#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/device_info.h"

namespace ds::tensor::cuda {
namespace {

__global__ void fill_kernel(float* out, float value, int count) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) out[i] = value;
}

}  // namespace

DeviceInfo query_devices() {
  DeviceInfo info;
  cudaRuntimeGetVersion(&info.runtime_version);
  cudaDriverGetVersion(&info.driver_version);
  const cudaError_t status = cudaGetDeviceCount(&info.device_count);
  if (status != cudaSuccess) {
    info.device_count = 0;
    info.error = cudaGetErrorString(status);
    return info;
  }
  if (info.device_count > 0) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) info.first_device_name = prop.name;
  }
  return info;
}

std::string device_uuid(int device) {
  cudaDeviceProp prop{};
  DS_CUDA_CALL(cudaGetDeviceProperties(&prop, device));
  std::string text = "GPU";
  for (int i = 0; i < 16; ++i) {
    if (i == 0 || i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(prop.uuid.bytes[i]));
    text += hex;
  }
  return text;
}

std::string device_pci_bus_id(int device) {
  char text[32] = {};  // "dddd:bb:dd.f" and room to spare
  DS_CUDA_CALL(cudaDeviceGetPCIBusId(text, sizeof text, device));
  return text;
}

bool fill_round_trip(float value, int count, std::string* error) {
  float* device = nullptr;
  cudaError_t status = cudaMalloc(&device, sizeof(float) * count);
  std::vector<float> host(count, 0.0f);
  if (status == cudaSuccess) {
    fill_kernel<<<(count + 255) / 256, 256>>>(device, value, count);
    status = cudaGetLastError();
  }
  if (status == cudaSuccess) {
    status = cudaMemcpy(host.data(), device, sizeof(float) * count, cudaMemcpyDeviceToHost);
  }
  cudaFree(device);
  if (status != cudaSuccess) {
    if (error) *error = cudaGetErrorString(status);
    return false;
  }
  for (float v : host) {
    if (v != value) {
      if (error) *error = "kernel wrote a wrong value";
      return false;
    }
  }
  return true;
}

}  // namespace ds::tensor::cuda
