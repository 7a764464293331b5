// What GPT-2's two bf16 sublayers (bf16_mlp.h, bf16_attention_block.h) do alike around their
// products: asking cuBLASLt for them, the projection onto the residual connection, the weight
// and bias gradients accumulated into fp32 views of any alignment, and the layernorm's backward
// onto the residual connection's gradient. One per sublayer: its staging buffers grow once to the
// largest shape. Not thread-safe.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/device_buffer.h"
#include "tensor/dtype.h"

namespace ds::tensor::cuda {

class LtMatmul;

class Bf16SublayerProducts {
 public:
  // norm_partials: the layernorm backward's workspace, shared with the caller's other ops.
  Bf16SublayerProducts(LtMatmul& lt, DeviceBuffer& norm_partials)
      : lt_(lt), norm_partials_(norm_partials) {}

  // Whether cuBLASLt has the product [N, IC] · [IC, OC] (WeightLayout::kInOut), its input
  // gradient and its weight gradient with bf16 operands, both with bf16 and with fp32 products
  // (asked once per shape; the plans are kept).
  bool supports(int N, int IC, int OC);

  // out (fp32) = residual + inp16 · w16 + bias (fp32), the residual added as the GEMM's C. out,
  // residual and bias may have any alignment (staged or copied here).
  void project(float* out, const float* residual, const void* inp16, const void* w16,
               const float* bias, int N, int IC, int OC, cudaStream_t stream);
  // dweight (fp32 [IC, OC], any alignment) += inp16ᵀ · dout16.
  void add_weight_gradient(float* dweight, const void* dout16, const void* inp16, int N, int IC,
                           int OC, cudaStream_t stream);
  // dbias (fp32, any alignment; nullptr: none) += the column sums of dout [N, C] in `dtype`
  // (mixed::bias_gradient, through the norm's workspace).
  void add_bias_gradient(float* dbias, const void* dout, DType dtype, int N, int C,
                         cudaStream_t stream);
  // dout (fp32) rounded to bf16 into `copy` for the GEMMs, and dbias (nullptr: none) += its
  // column sums, in one pass where it can (mixed::rounded_with_bias_gradient). Returns the copy.
  const void* rounded_with_bias_gradient(float* dbias, const float* dout, int N, int C,
                                         DeviceBuffer& copy, cudaStream_t stream);
  // dx = dresidual + layernorm's input gradient from the bf16 dln (dx may be dresidual), dweight
  // and dbias += theirs (mixed::layernorm_backward_from_bf16), with dx handed on where hand_off
  // is not nullptr and the kernels can; returns whether they did.
  bool norm_backward(float* dx, const float* dresidual, float* dweight, float* dbias,
                     const __nv_bfloat16* dln, const float* x, const float* weight,
                     const float* mean, const float* rstd, int N, int C,
                     const mixed::GradientHandOff* hand_off, cudaStream_t stream);

 private:
  LtMatmul& lt_;
  DeviceBuffer& norm_partials_;
  DeviceBuffer out_staging_, gradient_staging_;  // out and dweight, when they are not aligned
  DeviceBuffer bias_, residual_;                 // their aligned copies, when they are not
};

}  // namespace ds::tensor::cuda
