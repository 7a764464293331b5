// Shared by the cuda_*_test.cpp parity tests: a GPU check that skips with a WARN, and
// host/device copies, beside parity_helpers.h's random inputs and normalised error.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "parity_helpers.h"
#include "tensor/cpu/cast.h"
#include "tensor/cuda/blas.h"
#include "tensor/cuda/device_buffer.h"
#include "tensor/cuda/device_info.h"
#include "tensor/dtype.h"

namespace ds_cuda_test {

namespace cuda = ds::tensor::cuda;
using namespace ds_parity_test;

// False (after a WARN naming why) on a machine without a usable GPU.
inline bool gpu_available() {
  static const cuda::DeviceInfo info = cuda::query_devices();
  if (info.device_count == 0) {
    WARN("no CUDA device (" << info.error << "): skipped");
    return false;
  }
  return true;
}

#define DS_SKIP_WITHOUT_GPU() \
  do {                        \
    if (!gpu_available()) {   \
      return;                 \
    }                         \
  } while (false)

// What a parity test runs on: its own stream and cuBLAS handle.
struct Gpu {
  cuda::Stream stream;
  cuda::Blas blas;
  cudaStream_t s() const { return stream.get(); }
};

template <typename T>
cuda::DeviceBuffer to_device(const std::vector<T>& host, const Gpu& gpu) {
  cuda::DeviceBuffer buffer(sizeof(T) * host.size());
  buffer.upload(host.data(), sizeof(T) * host.size(), gpu.s());
  return buffer;
}

template <typename T>
std::vector<T> to_host(const cuda::DeviceBuffer& buffer, size_t n, const Gpu& gpu) {
  std::vector<T> host(n);
  buffer.download(host.data(), sizeof(T) * n, gpu.s());
  return host;
}

inline Vec to_host(const cuda::DeviceBuffer& buffer, const Gpu& gpu) {
  return to_host<float>(buffer, buffer.bytes() / sizeof(float), gpu);
}

// Bytes of n elements of `dtype`.
inline size_t bytes_of(size_t n, ds::tensor::DType dtype) {
  return ds::tensor::dtype_size(dtype) * n;
}

// v as `dtype` stores it (f32, bf16 or f16), read back as fp32.
inline Vec rounded(const Vec& v, ds::tensor::DType dtype) {
  std::vector<char> stored(ds::tensor::dtype_size(dtype) * v.size());
  ds::tensor::cpu::from_f32(stored.data(), dtype, v.data(), int64_t(v.size()));
  Vec out(v.size());
  ds::tensor::cpu::to_f32(out.data(), stored.data(), dtype, int64_t(v.size()));
  return out;
}

// v stored as `dtype` on the device, and n elements of `dtype` back as fp32.
inline cuda::DeviceBuffer to_device(const Vec& v, ds::tensor::DType dtype, const Gpu& gpu) {
  std::vector<char> stored(ds::tensor::dtype_size(dtype) * v.size());
  ds::tensor::cpu::from_f32(stored.data(), dtype, v.data(), int64_t(v.size()));
  cuda::DeviceBuffer buffer(stored.size());
  buffer.upload(stored.data(), stored.size(), gpu.s());
  return buffer;
}

inline Vec to_host(const cuda::DeviceBuffer& buffer, size_t n, ds::tensor::DType dtype,
                   const Gpu& gpu) {
  std::vector<char> stored(ds::tensor::dtype_size(dtype) * n);
  buffer.download(stored.data(), stored.size(), gpu.s());
  Vec out(n);
  ds::tensor::cpu::to_f32(out.data(), stored.data(), dtype, int64_t(n));
  return out;
}

}  // namespace ds_cuda_test
