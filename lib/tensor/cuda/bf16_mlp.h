// GPT-2's pre-norm MLP sublayer in a bf16 run on the GPU (CudaOps::mlp_forward and mlp_backward):
// out = x + MLP(layernorm(x)). The norm's output, the hidden activations (the pre-GELU values and
// GELU's output, N x H, the largest tensors of a layer) and their gradients are stored in bf16,
// and the four products take bf16 operands and accumulate in fp32 (LtMatmul::Storage):
//   forward   ln (bf16), mean, rstd  = layernorm(x), rounded once
//             pre, act (bf16)       = GELU_AUX_BIAS(ln · W_fc + b_fc)
//             out (fp32)            = x + act · W_proj + b_proj          (x: the GEMM's C)
//   backward  dpre (bf16)           = DGELU(dout · W_projᵀ, pre)
//             dW_proj, db_proj     += actᵀ · dout, column sums of dout          (fp32)
//             dln (bf16)            = dpre · W_fcᵀ                               (written)
//             dW_fc, db_fc         += lnᵀ · dpre, column sums of dpre           (fp32)
//             dx (fp32)             = dout + layernorm's backward of dln        (written)
// dout and the weights arrive in fp32 and are rounded to bf16 on the way in, as the other matmuls
// of such a run round theirs (bf16_matmul.h). So the numbers are those the composed sublayer
// computes in a bf16 run, which rounds ln on its way into the expansion, except for roundings
// that PyTorch autocast makes too (where a linear layer's inputs, bias included, and output are
// bf16): the pre-GELU values before GELU's derivative reads them, the expansion's bias (a bf16
// output's epilogue adds a bf16 bias), the hidden gradient before its column sums give db_fc,
// and dln before the norm's backward reads it. db_proj is summed from the fp32 dout. What the
// rest of the model reads (out, dx, the gradients) stays fp32.
//
// The saved region (saved_floats) is about half the composed sublayer's; CudaOps sizes it by the
// same test of the shape that picks the bf16 MLP, so a forward and its backward always agree. The
// backward's bf16 tensors live in the composed backward's scratch (Ops::SublayerScratch), which
// is twice what they take. Rounded copies and any pointer that is not 16-byte aligned go through
// buffers here that grow once.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/bf16_sublayer_products.h"
#include "tensor/cuda/device_buffer.h"
#include "tensor/ops.h"

namespace ds::tensor::cuda {

class LtMatmul;

class Bf16Mlp {
 public:
  // norm_partials: the layernorm backward's workspace, shared with the caller's other ops.
  Bf16Mlp(LtMatmul& lt, DeviceBuffer& norm_partials) : lt_(lt), products_(lt, norm_partials) {}

  // Whether the bf16 MLP runs this shape: a width and hidden width that are multiples of 8 (the
  // GELU epilogues' and the bf16 tensors' alignment), and cuBLASLt algorithms for each product's
  // dtypes. From the shape alone (the plans are kept), so that a forward and its backward agree.
  bool supports(int N, int C, int H);
  // The floats of the saved region: 3 of slack, pre and act [N,H] and ln [N,C] in bf16, the norm's
  // mean and rstd [N].
  static int64_t saved_floats(int N, int C, int H);

  // As Ops::mlp_forward and mlp_backward, on `stream`. The backward also hands dx on to
  // `hand_off` where it is not nullptr and the norm's kernels can (mixed::GradientHandOff), and
  // returns whether it did.
  void forward(float* out, float* saved, const float* x, const Ops::SublayerWeights& w, float eps,
               int N, int C, int H, cudaStream_t stream);
  bool backward(float* dx, const Ops::SublayerGrads& g, const Ops::SublayerScratch& t,
                const float* dout, const float* saved, const float* x,
                const Ops::SublayerWeights& w, int N, int C, int H,
                const mixed::GradientHandOff* hand_off, cudaStream_t stream);

 private:
  LtMatmul& lt_;
  Bf16SublayerProducts products_;
  DeviceBuffer dout16_, w_fc16_, w_proj16_, b_fc16_;  // rounded copies
};

}  // namespace ds::tensor::cuda
