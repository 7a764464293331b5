#include "tensor/cuda/bf16_sublayer_products.h"

#include <cstdint>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/lt_matmul.h"
#include "tensor/cuda/staged_output.h"

namespace ds::tensor::cuda {

using cpu::WeightLayout;

bool Bf16SublayerProducts::supports(int N, int IC, int OC) {
  return lt_.supports(N, IC, OC, WeightLayout::kInOut, kBf16Products) &&
         lt_.supports(N, IC, OC, WeightLayout::kInOut, kFp32Products);
}

void Bf16SublayerProducts::project(float* out, const float* residual, const void* inp16,
                                   const void* w16, const float* bias, int N, int IC, int OC,
                                   cudaStream_t stream) {
  const int64_t n = int64_t{N} * OC;
  const float* aligned_bias = aligned_input(bias, OC, bias_, stream);
  const float* aligned_residual = aligned_input(residual, n, residual_, stream);
  const StagedOutput staged = StagedOutput::writing(out, n, out_staging_);
  lt_.forward_residual(staged.at, aligned_residual, inp16, w16, aligned_bias, N, IC, OC,
                       WeightLayout::kInOut, kFp32Products, stream);
  staged.finish(stream);
}

void Bf16SublayerProducts::add_weight_gradient(float* dweight, const void* dout16,
                                               const void* inp16, int N, int IC, int OC,
                                               cudaStream_t stream) {
  const auto staged =
      StagedOutput::accumulating(dweight, int64_t{IC} * OC, gradient_staging_, stream);
  lt_.backward(nullptr, staged.at, nullptr, dout16, inp16, nullptr, N, IC, OC, WeightLayout::kInOut,
               kFp32Products, stream);
  staged.finish(stream);
}

void Bf16SublayerProducts::add_bias_gradient(float* dbias, const void* dout, DType dtype, int N,
                                             int C, cudaStream_t stream) {
  if (dbias != nullptr) mixed::bias_gradient(dbias, dout, dtype, N, C, norm_partials_, stream);
}

const void* Bf16SublayerProducts::rounded_with_bias_gradient(float* dbias, const float* dout, int N,
                                                             int C, DeviceBuffer& copy,
                                                             cudaStream_t stream) {
  return mixed::rounded_with_bias_gradient(dbias, dout, N, C, copy, norm_partials_, stream);
}

bool Bf16SublayerProducts::norm_backward(float* dx, const float* dresidual, float* dweight,
                                         float* dbias, const __nv_bfloat16* dln, const float* x,
                                         const float* weight, const float* mean, const float* rstd,
                                         int N, int C, const mixed::GradientHandOff* hand_off,
                                         cudaStream_t stream) {
  return mixed::layernorm_backward_from_bf16(
      dx, dresidual, dweight, dbias, dln, x, weight, mean, rstd, N, C,
      mixed::layernorm_partials(norm_partials_, C), hand_off, stream);
}

}  // namespace ds::tensor::cuda
