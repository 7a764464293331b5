// DS_CUDA_CALL and DS_CUBLAS_CALL: every CUDA runtime and cuBLAS call in lib/tensor/cuda goes
// through one, which throws ds::Error naming the call, the file and line, and the library's
// reason. DS_CUDA_LAUNCHED() follows each kernel launch (launches return no status).
//
// Named apart from comm's DS_CUDA_CHECK (comm/nccl/nccl_check.h) so that a file may include
// both; comm sits above tensor and could move onto these.
//
// Plain C++ with no fmt, so that nvcc (C++17) compiles it; the message is formatted in
// cuda_check.cpp.
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

namespace ds::tensor::cuda::detail {

[[noreturn]] void cuda_failed(const char* file, int line, const char* call, cudaError_t result);
[[noreturn]] void cublas_failed(const char* file, int line, const char* call,
                                cublasStatus_t result);
[[noreturn]] void requirement_failed(const char* file, int line, const char* condition);

}  // namespace ds::tensor::cuda::detail

#define DS_CUDA_CALL(call)                                                                 \
  do {                                                                                     \
    const cudaError_t ds_cuda_result_ = (call);                                            \
    if (ds_cuda_result_ != cudaSuccess) {                                                  \
      ::ds::tensor::cuda::detail::cuda_failed(__FILE__, __LINE__, #call, ds_cuda_result_); \
    }                                                                                      \
  } while (false)

#define DS_CUBLAS_CALL(call)                                                                   \
  do {                                                                                         \
    const cublasStatus_t ds_cublas_result_ = (call);                                           \
    if (ds_cublas_result_ != CUBLAS_STATUS_SUCCESS) {                                          \
      ::ds::tensor::cuda::detail::cublas_failed(__FILE__, __LINE__, #call, ds_cublas_result_); \
    }                                                                                          \
  } while (false)

// An argument check in code that nvcc compiles (which cannot use DS_CHECK's fmt arguments).
#define DS_CUDA_REQUIRE(condition)                                                    \
  do {                                                                                \
    if (!(condition)) {                                                               \
      ::ds::tensor::cuda::detail::requirement_failed(__FILE__, __LINE__, #condition); \
    }                                                                                 \
  } while (false)

// A bad launch configuration shows up here; a fault inside the kernel shows up at the next
// synchronising call.
#define DS_CUDA_LAUNCHED() DS_CUDA_CALL(cudaGetLastError())
