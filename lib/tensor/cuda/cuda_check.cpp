#include "tensor/cuda/cuda_check.h"

#include <cublas_v2.h>
#include <fmt/format.h>

#include <cstring>

#include "util/error.h"

namespace ds::tensor::cuda::detail {
namespace {

const char* base_name(const char* file) {
  const char* slash = std::strrchr(file, '/');
  return slash ? slash + 1 : file;
}

}  // namespace

void cuda_failed(const char* file, int line, const char* call, cudaError_t result) {
  throw Error(fmt::format("CUDA call {} failed at {}:{}: {} ({})", call, base_name(file), line,
                          cudaGetErrorString(result), cudaGetErrorName(result)),
              result == cudaErrorMemoryAllocation
                  ? "the GPU is out of memory: lower train_micro_batch_size_per_gpu or use a "
                    "higher ZeRO stage"
                  : "check that this process sees its GPU (CUDA_VISIBLE_DEVICES, nvidia-smi); "
                    "CUDA_LAUNCH_BLOCKING=1 pins an asynchronous fault on the kernel that made it");
}

void cublas_failed(const char* file, int line, const char* call, cublasStatus_t result) {
  throw Error(fmt::format("cuBLAS call {} failed at {}:{}: {} ({})", call, base_name(file), line,
                          cublasGetStatusString(result), cublasGetStatusName(result)),
              "CUBLAS_LOGINFO_DBG=1 makes cuBLAS log the failing call's arguments");
}

void requirement_failed(const char* file, int line, const char* condition) {
  fail_check(file, line, condition, "invalid arguments to a CUDA op");
}

}  // namespace ds::tensor::cuda::detail
