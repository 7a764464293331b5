// GPT-2's pre-norm attention sublayer in a bf16 run on the GPU (CudaOps::attention_block_forward
// and attention_block_backward), for the head sizes of the tensor-core attention:
// out = x + attention(layernorm(x)). The norm's output, qkv, attention's output and their
// gradients are stored in bf16, where the composed sublayer keeps them in fp32 and rounds them on
// the way into each product, and the products take bf16 operands and accumulate in fp32
// (LtMatmul::Storage):
//   forward   ln (bf16), mean, rstd  = layernorm(x), rounded once
//             qkv (bf16)            = ln · W_qkv + b_qkv
//             y (bf16), lse         = causal attention over qkv's heads, read in place
//             out (fp32)            = x + y · W_proj + b_proj             (x: the GEMM's C)
//   backward  dy (bf16)             = dout · W_projᵀ                              (written)
//             dW_proj, db_proj     += yᵀ · dout, column sums of dout              (fp32)
//             dqkv (bf16)           = attention's gradient                       (written)
//             dln (bf16)            = dqkv · W_qkvᵀ                              (written)
//             dW_qkv, db_qkv       += lnᵀ · dqkv, column sums of dqkv             (fp32)
//             dx (fp32)             = dout + layernorm's backward of dln         (written)
// dout and the weights arrive in fp32 and are rounded to bf16 on the way in. So ln, qkv, y, dy
// and dqkv, which the composed sublayer rounds before each product that reads them, are rounded
// once where they are made instead, and the copies and conversions in between are gone
// (attention reads qkv and dy where they lie, tensor_core_attention.h). What differs are
// roundings that PyTorch autocast makes too: qkv's bias (a bf16 output's epilogue adds a bf16
// bias), the dy and y that the backward's row dots (dy·y) read, dqkv before its column sums give
// db_qkv, and dln before the norm's backward reads it. What the rest of the model reads (out, dx,
// the gradients) stays fp32.
//
// The saved region (saved_floats) holds ln, qkv and y in bf16, the rows' log-sum-exp and the
// norm's statistics: about half the composed sublayer's. The backward's bf16 tensors live in the
// composed backward's scratch (Ops::SublayerScratch), which is twice what they take. Rounded
// copies and any fp32 pointer that is not 16-byte aligned go through buffers here that grow once.
// Not thread-safe.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/bf16_sublayer_products.h"
#include "tensor/cuda/device_buffer.h"
#include "tensor/ops.h"

namespace ds::tensor::cuda {

class LtMatmul;
class TensorCoreAttention;

class Bf16AttentionBlock {
 public:
  // norm_partials: the layernorm backward's workspace, shared with the caller's other ops.
  Bf16AttentionBlock(LtMatmul& lt, TensorCoreAttention& attention, DeviceBuffer& norm_partials)
      : lt_(lt), attention_(attention), products_(lt, norm_partials) {}

  // Whether cuBLASLt has the bf16 GEMMs of both products at N = B·T rows (asked once per shape;
  // the plans are kept). The caller checks that the tensor-core attention runs C and NH.
  bool supports(int N, int C);
  // The floats of the saved region: 3 of slack, qkv, y and ln in bf16, the log-sum-exp
  // [B,NH,T], the norm's mean and rstd [N].
  static int64_t saved_floats(int B, int T, int C, int NH);

  // As Ops::attention_block_forward and attention_block_backward, on `stream`. The backward
  // takes dout's bf16 copy and column sums from `handed` where it is not nullptr (what the MLP's
  // backward handed on with dout, mixed::GradientHandOff) instead of reading dout for them.
  void forward(float* out, float* saved, const float* x, const Ops::SublayerWeights& w, float eps,
               int B, int T, int C, int NH, cudaStream_t stream);
  void backward(float* dx, const Ops::SublayerGrads& g, const Ops::SublayerScratch& t,
                const float* dout, const float* saved, const float* x,
                const Ops::SublayerWeights& w, int B, int T, int C, int NH,
                const mixed::GradientHandOff* handed, cudaStream_t stream);

 private:
  LtMatmul& lt_;
  TensorCoreAttention& attention_;
  Bf16SublayerProducts products_;
  DeviceBuffer dout16_, w_qkv16_, b_qkv16_, w_proj16_;  // rounded copies
};

}  // namespace ds::tensor::cuda
