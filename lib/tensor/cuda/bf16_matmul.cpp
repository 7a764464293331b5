#include "tensor/cuda/bf16_matmul.h"

#include <cstdint>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/lt_matmul.h"
#include "tensor/cuda/staged_output.h"

namespace ds::tensor::cuda {

bool Bf16Matmul::supports(int N, int IC, int OC, cpu::WeightLayout layout) {
  return lt_.supports(N, IC, OC, layout, kFp32Products);
}

void Bf16Matmul::forward(float* out, const float* inp, const float* weight, const float* bias,
                         int N, int IC, int OC, cpu::WeightLayout layout, cudaStream_t stream) {
  if (N == 0) return;
  const void* inp16 = rounded_to_bf16(inp, int64_t{N} * IC, inp16_, stream);
  const void* weight16 = rounded_to_bf16(weight, int64_t{IC} * OC, weight16_, stream);
  const float* aligned_bias = aligned_input(bias, OC, bias_, stream);
  lt_.forward(out, inp16, weight16, aligned_bias, N, IC, OC, layout, kFp32Products, stream);
}

void Bf16Matmul::backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, int N, int IC, int OC,
                          cpu::WeightLayout layout, cudaStream_t stream) {
  if (N == 0) return;
  const void* dout16 = rounded_to_bf16(dout, int64_t{N} * OC, dout16_, stream);
  const void* inp16 =
      dweight == nullptr ? nullptr : rounded_to_bf16(inp, int64_t{N} * IC, inp16_, stream);
  const void* weight16 =
      dinp == nullptr ? nullptr : rounded_to_bf16(weight, int64_t{IC} * OC, weight16_, stream);
  lt_.backward(dinp, dweight, nullptr, dout16, inp16, weight16, N, IC, OC, layout, kFp32Products,
               stream);
  if (dbias != nullptr)
    mixed::matmul_bias_backward(dbias, DType::kF32, dout, DType::kF32, N, OC, stream);
}

}  // namespace ds::tensor::cuda
