// GPT-2's MLP in a bf16 run on the GPU (CudaOps::mlp_forward and mlp_backward). Its hidden
// activations, the pre-GELU values and GELU's output (N x H, the largest tensors of a layer),
// and their gradient are stored in bf16, and its four products take bf16 operands and accumulate
// in fp32 (LtMatmul::Storage):
//   forward   pre, act (bf16)       = GELU_AUX_BIAS(inp · W_fc + b_fc)
//             out (fp32)            = residual + act · W_proj + b_proj  (residual: GEMM's C)
//   backward  dpre (bf16)           = DGELU(dout · W_projᵀ, pre)
//             dW_proj, db_proj     += actᵀ · dout, column sums of dout          (fp32)
//             dinp (fp32)           = dpre · W_fcᵀ                               (written)
//             dW_fc, db_fc         += inpᵀ · dpre, column sums of dpre          (fp32)
// inp, dout and the weights arrive in fp32 and are rounded to bf16 on the way in, as the other
// matmuls of such a run round theirs (bf16_matmul.h); inp's copy is saved for the expansion's
// weight gradient, so the backward does not read inp again. So the
// numbers are those the composed MLP computes in a bf16 run, except for three roundings, each
// PyTorch autocast's too (where a linear layer's inputs, bias included, and output are bf16):
// the pre-GELU values before GELU's derivative reads them, the expansion's bias (a bf16 output's
// epilogue adds a bf16 bias), and the hidden gradient before its column sums give db_fc. db_proj
// is summed from the fp32 dout. What the rest of the model reads (out, dinp, the gradients)
// stays fp32.
//
// The saved region (saved_floats: pre, act and inp in bf16 from its first 16-byte boundary) is
// about half the composed MLP's; CudaOps sizes it by the same test of the shape that picks the
// bf16 MLP, so a forward and its backward always agree. Rounded copies and any pointer that is
// not 16-byte aligned go through scratch that grows once.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tensor/cuda/device_buffer.h"

namespace ds::tensor::cuda {

class LtMatmul;

class Bf16Mlp {
 public:
  explicit Bf16Mlp(LtMatmul& lt) : lt_(lt) {}

  // Whether the bf16 MLP runs this shape: a hidden width that is a multiple of 8 (the GELU
  // epilogues' leading dimension must be), and cuBLASLt algorithms for each product's dtypes.
  // From the shape alone (the plans are kept), so that a forward and its backward agree.
  bool supports(int N, int C, int H);
  // The floats of the saved region: 3 of slack, then pre and act [N,H] and inp [N,C] in bf16.
  static int64_t saved_floats(int N, int C, int H);

  // As Ops::mlp_forward and mlp_backward, on `stream`.
  void forward(float* out, float* saved, const float* inp, const float* residual, const float* w_fc,
               const float* b_fc, const float* w_proj, const float* b_proj, int N, int C, int H,
               cudaStream_t stream);
  void backward(float* dinp, float* dw_fc, float* db_fc, float* dw_proj, float* db_proj,
                float* scratch, const float* dout, const float* saved, const float* inp,
                const float* w_fc, const float* w_proj, int N, int C, int H, cudaStream_t stream);

 private:
  LtMatmul& lt_;
  DeviceBuffer dout16_, w_fc16_, w_proj16_, b_fc16_;
  DeviceBuffer staged_[3];  // out or dinp, and the two weight gradients
  DeviceBuffer b_proj_;     // b_proj, when it is not aligned
  DeviceBuffer residual_;   // the residual, when it is not aligned
};

}  // namespace ds::tensor::cuda
