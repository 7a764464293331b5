// DS_NCCL_CHECK and DS_CUDA_CHECK: every NCCL and CUDA runtime call in comm goes through one,
// which throws ds::Error naming the call, the file and line, and NCCL's or CUDA's reason.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

// Non-blocking communicators (ncclCommInitRankConfig, NCCL_CONFIG_INITIALIZER) came in NCCL 2.14;
// ncclBfloat16 and ncclAvg are older. NcclProcessGroup checks the loaded library as well.
#if !defined(NCCL_VERSION_CODE) || NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "dstrain's NCCL backend needs NCCL 2.14 or later (nccl.h is older)"
#endif

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
