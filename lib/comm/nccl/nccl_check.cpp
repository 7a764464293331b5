#include "comm/nccl/nccl_check.h"

#include <fmt/format.h>

#include <cstring>

#include "util/error.h"

namespace ds::comm::detail {
namespace {

const char* base_name(const char* file) {
  const char* slash = std::strrchr(file, '/');
  return slash ? slash + 1 : file;
}

}  // namespace

void nccl_failed(const char* file, int line, const char* call, ncclResult_t result,
                 const char* last_error) {
  std::string detail = ncclGetErrorString(result);
  if (last_error != nullptr && *last_error != '\0') detail += fmt::format(" ({})", last_error);
  throw Error(fmt::format("NCCL call {} failed at {}:{}: {}", call, base_name(file), line, detail),
              result == ncclSystemError || result == ncclRemoteError
                  ? "a peer rank or the network failed; look at the other ranks' logs "
                    "(NCCL_DEBUG=INFO shows more)"
                  : "run with NCCL_DEBUG=INFO for NCCL's own account");
}

void cuda_failed(const char* file, int line, const char* call, cudaError_t result) {
  throw Error(fmt::format("CUDA call {} failed at {}:{}: {}", call, base_name(file), line,
                          cudaGetErrorString(result)),
              "check that this rank sees its GPU (CUDA_VISIBLE_DEVICES, nvidia-smi)");
}

}  // namespace ds::comm::detail
