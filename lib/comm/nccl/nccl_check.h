// DS_NCCL_CHECK and DS_CUDA_CHECK: every NCCL and CUDA runtime call in comm goes through one,
// which throws ds::Error naming the call, the file and line, and NCCL's or CUDA's reason.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

namespace ds::comm::detail {

[[noreturn]] void nccl_failed(const char* file, int line, const char* call, ncclResult_t result,
                              const char* last_error);
[[noreturn]] void cuda_failed(const char* file, int line, const char* call, cudaError_t result);

}  // namespace ds::comm::detail

#define DS_NCCL_CHECK(call)                                                       \
  do {                                                                            \
    const ncclResult_t ds_nccl_result_ = (call);                                  \
    if (ds_nccl_result_ != ncclSuccess && ds_nccl_result_ != ncclInProgress) {    \
      ::ds::comm::detail::nccl_failed(__FILE__, __LINE__, #call, ds_nccl_result_, \
                                      ncclGetLastError(nullptr));                 \
    }                                                                             \
  } while (false)

#define DS_CUDA_CHECK(call)                                                        \
  do {                                                                             \
    const cudaError_t ds_cuda_result_ = (call);                                    \
    if (ds_cuda_result_ != cudaSuccess) {                                          \
      ::ds::comm::detail::cuda_failed(__FILE__, __LINE__, #call, ds_cuda_result_); \
    }                                                                              \
  } while (false)
