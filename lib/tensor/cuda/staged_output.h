// fp32 results of cuBLASLt calls, whose every pointer must be 16-byte aligned (LtMatmul::aligned),
// for callers that take any float pointer (views into activation and gradient buffers of odd
// sizes): the call writes at the target itself when it is aligned, else into staging that
// finish() adds or copies to the target. The staging grows once to the largest shape.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tensor/cuda/device_buffer.h"

namespace ds::tensor::cuda {

struct StagedOutput {
  float* target;
  float* at;  // where the call writes: target, or the staging
  int64_t n;
  bool accumulate;  // the call adds to the target (else it writes it)

  // For a result the call adds to (+=): the staging starts at zero. A nullptr target stays
  // nullptr (a gradient nobody wants).
  static StagedOutput accumulating(float* target, int64_t n, DeviceBuffer& staging,
                                   cudaStream_t stream);
  // For a result the call writes.
  static StagedOutput writing(float* target, int64_t n, DeviceBuffer& staging);
  // Adds (accumulating) or copies (writing) the staging to the target; nothing when there was
  // none.
  void finish(cudaStream_t stream) const;
};

// `values` (n floats, nullable) where a cuBLASLt call can read them: itself when aligned, else a
// copy in `copy`.
const float* aligned_input(const float* values, int64_t n, DeviceBuffer& copy, cudaStream_t stream);

}  // namespace ds::tensor::cuda
