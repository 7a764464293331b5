// The cuBLAS handle the matmul and attention ops run their GEMMs on, and a row-major GEMM in
// the shape of cblas_sgemm(CblasRowMajor, ...) so that the CUDA ops read like the CPU ones.
//
// The GEMMs take fp32 operands and accumulate in fp32 at the handle's MatmulPrecision (ops.h):
// kFp32 computes in full fp32 (CUBLAS_COMPUTE_32F, no TF32 unless NVIDIA_TF32_OVERRIDE=1 is set
// in the environment); kTf32 and kBf16 let cuBLAS round the inputs to TF32 or bf16 on the tensor
// cores (CUBLAS_COMPUTE_32F_FAST_TF32 / _FAST_16BF). Atomics stay disallowed, so results are
// bitwise repeatable for the same toolkit, GPU architecture and SM count, on one stream.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <library_types.h>

#include <cstdint>

#include "tensor/matmul_precision.h"

namespace ds::tensor::cuda {

// The cuBLAS compute type of fp32 GEMMs at `precision` (fp32 accumulation throughout).
cublasComputeType_t cublas_compute_type(MatmulPrecision precision);

class Blas {
 public:
  // On the current device; throws ds::Error naming the failing call.
  explicit Blas(MatmulPrecision precision = MatmulPrecision::kFp32);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  // The handle with its work bound to `stream`.
  cublasHandle_t on(cudaStream_t stream);
  cublasComputeType_t compute_type() const { return compute_; }

 private:
  cublasHandle_t handle_ = nullptr;
  cublasComputeType_t compute_ = CUBLAS_COMPUTE_32F;
};

// Row-major c[m][n] = alpha op(a) op(b) + beta c, op(x) = x or x^T, with leading dimensions in
// row-major terms, on `stream`. The batched form repeats it `batch` times, each operand
// advancing by its stride (in floats).
void gemm(Blas& blas, cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k,
          float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c,
          int ldc);
// The same for operands of any cuBLAS data type, at an explicit compute type (mixed types, such
// as bf16 inputs with an fp32 output, at CUBLAS_COMPUTE_32F).
struct GemmOperand {
  const void* data;
  cudaDataType_t type;
  int64_t ld;
};
void gemm_ex(Blas& blas, cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k,
             float alpha, GemmOperand a, GemmOperand b, float beta, void* c, cudaDataType_t c_type,
             int64_t ldc, cublasComputeType_t compute);
void gemm_batched(Blas& blas, cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k,
                  float alpha, const float* a, int lda, int64_t stride_a, const float* b, int ldb,
                  int64_t stride_b, float beta, float* c, int ldc, int64_t stride_c, int batch);

}  // namespace ds::tensor::cuda
