#include "tensor/cuda/staged_output.h"

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/kernels.h"
#include "tensor/cuda/lt_matmul.h"

namespace ds::tensor::cuda {

namespace {

size_t float_bytes(int64_t n) { return sizeof(float) * static_cast<size_t>(n); }

}  // namespace

StagedOutput StagedOutput::accumulating(float* target, int64_t n, DeviceBuffer& staging,
                                        cudaStream_t stream) {
  if (target == nullptr || LtMatmul::aligned(target)) return {target, target, n, true};
  staging.grow(float_bytes(n));
  fill_zero(staging.as<float>(), n, stream);
  return {target, staging.as<float>(), n, true};
}

StagedOutput StagedOutput::writing(float* target, int64_t n, DeviceBuffer& staging) {
  if (LtMatmul::aligned(target)) return {target, target, n, false};
  staging.grow(float_bytes(n));
  return {target, staging.as<float>(), n, false};
}

void StagedOutput::finish(cudaStream_t stream) const {
  if (at == target) return;
  if (accumulate) {
    add_inplace(target, at, n, stream);
  } else {
    DS_CUDA_CALL(cudaMemcpyAsync(target, at, float_bytes(n), cudaMemcpyDeviceToDevice, stream));
  }
}

const float* aligned_input(const float* values, int64_t n, DeviceBuffer& copy,
                           cudaStream_t stream) {
  if (values == nullptr || LtMatmul::aligned(values)) return values;
  copy.grow(float_bytes(n));
  DS_CUDA_CALL(
      cudaMemcpyAsync(copy.data(), values, float_bytes(n), cudaMemcpyDeviceToDevice, stream));
  return copy.as<float>();
}

}  // namespace ds::tensor::cuda
