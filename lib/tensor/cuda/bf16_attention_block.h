// GPT-2's attention sublayer in a bf16 run on the GPU (CudaOps::attention_block_forward and
// attention_block_backward), for the head sizes of the tensor-core attention: qkv, attention's
// output and their gradients are stored in bf16, where the composed sublayer keeps them in fp32
// and rounds them on the way into each product, and the products take bf16 operands and
// accumulate in fp32 (LtMatmul::Storage):
//   forward   qkv (bf16)            = inp · W_qkv + b_qkv
//             y (bf16), lse         = causal attention over qkv's heads, read in place
//             out (fp32)            = residual + y · W_proj + b_proj  (residual: GEMM's C)
//   backward  dy (bf16)             = dout · W_projᵀ                              (written)
//             dW_proj, db_proj     += yᵀ · dout, column sums of dout              (fp32)
//             dqkv (bf16)           = attention's gradient                       (written)
//             dinp (fp32)           = dqkv · W_qkvᵀ                              (written)
//             dW_qkv, db_qkv       += inpᵀ · dqkv, column sums of dqkv            (fp32)
// inp, dout and the weights arrive in fp32 and are rounded to bf16 on the way in; inp's copy is
// saved for the weight gradient, so the backward does not read inp again. So qkv, y, dy
// and dqkv, which the composed sublayer rounds before each product that reads them, are rounded
// once where they are made instead, and the copies and conversions in between are gone
// (attention reads qkv and dy where they lie, tensor_core_attention.h). What differs are three
// roundings, each also PyTorch autocast's: qkv's bias (a bf16 output's epilogue adds a bf16 bias),
// the dy and y that the backward's row dots (dy·y) read, and dqkv before its column sums give
// db_qkv. What the rest of the model reads (out, dinp, the gradients) stays fp32.
//
// The saved region (saved_floats) holds qkv, y and inp in bf16 and the rows' log-sum-exp: 5/8 of
// the composed sublayer's. The backward's bf16 tensors live in the composed backward's scratch
// (Ops::AttentionBlockScratch), which is twice what they take. Rounded copies and any fp32 pointer
// that is not 16-byte aligned go through buffers here that grow once. Not thread-safe.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tensor/cuda/device_buffer.h"
#include "tensor/ops.h"

namespace ds::tensor::cuda {

class LtMatmul;
class TensorCoreAttention;

class Bf16AttentionBlock {
 public:
  Bf16AttentionBlock(LtMatmul& lt, TensorCoreAttention& attention)
      : lt_(lt), attention_(attention) {}

  // Whether cuBLASLt has the bf16 GEMMs of both products at N = B·T rows (asked once per shape;
  // the plans are kept). The caller checks that the tensor-core attention runs C and NH.
  bool supports(int N, int C);
  // The floats of the saved region: 3 of slack, qkv, y and inp in bf16, the log-sum-exp
  // [B,NH,T].
  static int64_t saved_floats(int B, int T, int C, int NH);

  // As Ops::attention_block_forward and attention_block_backward, on `stream`.
  void forward(float* out, float* saved, const float* inp, const float* residual,
               const float* w_qkv, const float* b_qkv, const float* w_proj, const float* b_proj,
               int B, int T, int C, int NH, cudaStream_t stream);
  void backward(float* dinp, float* dw_qkv, float* db_qkv, float* dw_proj, float* db_proj,
                const Ops::AttentionBlockScratch& scratch, const float* dout, const float* saved,
                const float* inp, const float* w_qkv, const float* w_proj, int B, int T, int C,
                int NH, cudaStream_t stream);

 private:
  LtMatmul& lt_;
  TensorCoreAttention& attention_;
  DeviceBuffer dout16_, w_qkv16_, b_qkv16_, w_proj16_;
  DeviceBuffer staged_[3];  // out or dinp, and the two weight gradients
  DeviceBuffer b_proj_;     // b_proj, when it is not aligned
  DeviceBuffer residual_;   // the residual, when it is not aligned
};

}  // namespace ds::tensor::cuda
