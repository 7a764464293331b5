// How far a GPU's fp32 matmuls (attention's included) may round their inputs; products are
// always accumulated in fp32. Its own header because CUDA sources include it (blas.h), and nvcc
// reads them without the rest of the op interface.
#pragma once

namespace ds::tensor {

// kFp32: not at all. kTf32: to TF32's 10-bit significand, on TF32 tensor cores. kBf16: to bf16's
// 7 bits, on bf16 tensor cores at twice TF32's rate, which is what PyTorch's bf16 autocast does
// to a matmul. The CPU always computes in full fp32.
enum class MatmulPrecision { kFp32, kTf32, kBf16 };

}  // namespace ds::tensor
