#include "tensor/cuda/blas.h"

#include "tensor/cuda/cuda_check.h"

namespace ds::tensor::cuda {

Blas::Blas(bool tf32) {
  DS_CUBLAS_CALL(cublasCreate(&handle_));
  DS_CUBLAS_CALL(
      cublasSetMathMode(handle_, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
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
  DS_CUBLAS_CALL(cublasSgemm(blas.on(stream), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                             trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a, lda,
                             &beta, c, ldc));
}

void gemm_batched(Blas& blas, cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k,
                  float alpha, const float* a, int lda, int64_t stride_a, const float* b, int ldb,
                  int64_t stride_b, float beta, float* c, int ldc, int64_t stride_c, int batch) {
  DS_CUBLAS_CALL(cublasSgemmStridedBatched(
      blas.on(stream), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n,
      m, k, &alpha, b, ldb, stride_b, a, lda, stride_a, &beta, c, ldc, stride_c, batch));
}

}  // namespace ds::tensor::cuda
