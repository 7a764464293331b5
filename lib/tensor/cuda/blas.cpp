#include "tensor/cuda/blas.h"

#include "tensor/cuda/cuda_check.h"

namespace ds::tensor::cuda {

cublasComputeType_t cublas_compute_type(MatmulPrecision precision) {
  switch (precision) {
    case MatmulPrecision::kTf32:
      return CUBLAS_COMPUTE_32F_FAST_TF32;
    case MatmulPrecision::kBf16:
      return CUBLAS_COMPUTE_32F_FAST_16BF;
    case MatmulPrecision::kFp32:
      break;
  }
  return CUBLAS_COMPUTE_32F;
}

Blas::Blas(MatmulPrecision precision) : compute_(cublas_compute_type(precision)) {
  DS_CUBLAS_CALL(cublasCreate(&handle_));
  DS_CUBLAS_CALL(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
  DS_CUBLAS_CALL(cublasSetAtomicsMode(handle_, CUBLAS_ATOMICS_NOT_ALLOWED));
  DS_CUBLAS_CALL(cublasSetPointerMode(handle_, CUBLAS_POINTER_MODE_HOST));
}

Blas::~Blas() {
  if (handle_ != nullptr) cublasDestroy(handle_);
}

cublasHandle_t Blas::on(cudaStream_t stream) {
  DS_CUBLAS_CALL(cublasSetStream(handle_, stream));
  return handle_;
}

// cuBLAS is column-major, and a row-major matrix is its transpose in column-major terms; so
// row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands (and m
// with n) and keep each operand's own transpose flag.
void gemm(Blas& blas, cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k,
          float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c,
          int ldc) {
  gemm_ex(blas, stream, trans_a, trans_b, m, n, k, alpha, {a, CUDA_R_32F, lda},
          {b, CUDA_R_32F, ldb}, beta, c, CUDA_R_32F, ldc, blas.compute_type());
}

void gemm_ex(Blas& blas, cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k,
             float alpha, GemmOperand a, GemmOperand b, float beta, void* c, cudaDataType_t c_type,
             int64_t ldc, cublasComputeType_t compute) {
  DS_CUBLAS_CALL(cublasGemmEx(blas.on(stream), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                              trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b.data, b.type,
                              static_cast<int>(b.ld), a.data, a.type, static_cast<int>(a.ld), &beta,
                              c, c_type, static_cast<int>(ldc), compute, CUBLAS_GEMM_DEFAULT));
}

void gemm_batched(Blas& blas, cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k,
                  float alpha, const float* a, int lda, int64_t stride_a, const float* b, int ldb,
                  int64_t stride_b, float beta, float* c, int ldc, int64_t stride_c, int batch) {
  DS_CUBLAS_CALL(cublasGemmStridedBatchedEx(
      blas.on(stream), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n,
      m, k, &alpha, b, CUDA_R_32F, ldb, stride_b, a, CUDA_R_32F, lda, stride_a, &beta, c,
      CUDA_R_32F, ldc, stride_c, batch, blas.compute_type(), CUBLAS_GEMM_DEFAULT));
}

}  // namespace ds::tensor::cuda
