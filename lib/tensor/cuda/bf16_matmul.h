// The plain matmuls of a bf16 run on the GPU (CudaOps::matmul_forward and matmul_backward: those
// outside GPT-2's fused sublayers, such as Llama's): the fp32 operands are rounded to bf16 copies
// and the GEMMs take bf16 × bf16 and accumulate in fp32 into the fp32 outputs and gradients
// (LtMatmul::Storage):
//   forward   out (fp32)            = inp · W + bias
//   backward  dinp (fp32)          += dout · Wᵀ
//             dW (fp32)            += the inp-and-dout GEMM;  db += column sums of the fp32 dout
// These are the numbers of CUBLAS_COMPUTE_32F_FAST_16BF on the fp32 operands, which also rounds
// them to bf16 and accumulates in fp32, but cuBLASLt runs those kernels at a half to a third of
// the speed of the bf16 ones on an H100 (dsbench gemm, GPT-2's qkv at N = 16384: forward 0.18 ms
// against 0.09, backward 0.55 against 0.21), more than the rounding costs. The bias gradient is a
// fixed-order fp32 column sum, as the bf16 MLP's (bf16_mlp.h).
//
// The outputs (out, dinp, dweight) must be 16-byte aligned, as cuBLASLt wants them (LtMatmul
// checks; CudaOps sends other matmuls to its other paths); the inputs and the bias may be
// anywhere. The rounded copies grow once to the largest shape. Not thread-safe; one per CudaOps.
#pragma once

#include <cuda_runtime_api.h>

#include "tensor/cpu/kernels.h"
#include "tensor/cuda/device_buffer.h"

namespace ds::tensor::cuda {

class LtMatmul;

class Bf16Matmul {
 public:
  explicit Bf16Matmul(LtMatmul& lt) : lt_(lt) {}

  // Whether cuBLASLt has the bf16-operand, fp32-output GEMMs this shape needs (asked once per
  // shape; the plans are kept).
  bool supports(int N, int IC, int OC, cpu::WeightLayout layout);

  // As Ops::matmul_forward and matmul_backward, on `stream`.
  void forward(float* out, const float* inp, const float* weight, const float* bias, int N, int IC,
               int OC, cpu::WeightLayout layout, cudaStream_t stream);
  void backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                const float* weight, int N, int IC, int OC, cpu::WeightLayout layout,
                cudaStream_t stream);

 private:
  LtMatmul& lt_;
  DeviceBuffer inp16_, weight16_, dout16_, bias_;
};

}  // namespace ds::tensor::cuda
