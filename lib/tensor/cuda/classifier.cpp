#include "tensor/cuda/classifier.h"

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/blas.h"
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/kernels.h"

namespace ds::tensor::cuda {

int64_t Classifier::scratch_floats(int N, int V) const {
  const int64_t elements = int64_t{N} * padded(V);
  return bf16_logits_ ? (elements + 1) / 2 : elements;  // two bf16 per float slot
}

void Classifier::round_operands(const float* inp, const float* head, int N, int C, int V,
                                cudaStream_t stream) {
  const size_t bf16_bytes = dtype_size(DType::kBF16);
  rounded_to_bf16(inp, int64_t{N} * C, inp16_, stream);
  const auto head_elements = static_cast<size_t>(int64_t{V} * C);
  const auto pad_elements = static_cast<size_t>((padded(V) - V) * C);
  head16_.grow(bf16_bytes * (head_elements + pad_elements));
  rounded_to_bf16(head, int64_t{V} * C, head16_, stream);
  // Zeroed on every call (a few hundred KB): the buffer may have held a larger head.
  DS_CUDA_CALL(cudaMemsetAsync(static_cast<char*>(head16_.data()) + bf16_bytes * head_elements, 0,
                               bf16_bytes * pad_elements, stream));
}

// Row-major, as blas.h: logits[N, V] (rows ld apart) = inp[N, C] · head[V, C]ᵀ.
void Classifier::forward(float* losses, float* scratch, const float* inp, const float* head,
                         const int32_t* targets, float dloss, int N, int C, int V,
                         cudaStream_t stream) {
  if (N == 0) return;
  const int64_t ld = padded(V);
  if (bf16_logits_) {
    round_operands(inp, head, N, C, V, stream);
    gemm_ex(blas_, stream, false, true, N, static_cast<int>(ld), C, 1.0f,
            {inp16_.data(), CUDA_R_16BF, C}, {head16_.data(), CUDA_R_16BF, C}, 0.0f, scratch,
            CUDA_R_16BF, ld, CUBLAS_COMPUTE_32F);
    mixed::softmax_cross_entropy(losses, scratch, scratch, targets, dloss, N, V, ld, DType::kBF16,
                                 stream);
    return;
  }
  gemm_ex(blas_, stream, false, true, N, V, C, 1.0f, {inp, CUDA_R_32F, C}, {head, CUDA_R_32F, C},
          0.0f, scratch, CUDA_R_32F, ld, blas_.compute_type());
  mixed::softmax_cross_entropy(losses, scratch, scratch, targets, dloss, N, V, ld, DType::kF32,
                               stream);
}

// dinp[N, C] += dlogits[N, V] · head[V, C];  dhead[V, C] += dlogits[N, V]ᵀ · inp[N, C].
void Classifier::backward(float* dinp, float* dhead, const float* scratch, const float* inp,
                          const float* head, int N, int C, int V, cudaStream_t stream) {
  if (N == 0) return;
  const int64_t ld = padded(V);
  if (bf16_logits_) {
    // Rounded again rather than kept from the forward: other micro-batches' forwards may have run
    // since (pipelines), and under ZeRO-3 the head may be another gathering of it; the rounding
    // reads a fraction of what one of the GEMMs reads.
    round_operands(inp, head, N, C, V, stream);
    // The padding's columns of dlogits and rows of the head are zero (the class comment).
    const int padded_v = static_cast<int>(ld);
    const GemmOperand dlogits{scratch, CUDA_R_16BF, ld};
    gemm_ex(blas_, stream, false, false, N, C, padded_v, 1.0f, dlogits,
            {head16_.data(), CUDA_R_16BF, C}, 1.0f, dinp, CUDA_R_32F, C, CUBLAS_COMPUTE_32F);
    dhead_padded_.grow(sizeof(float) * static_cast<size_t>(ld * C));
    gemm_ex(blas_, stream, true, false, padded_v, C, N, 1.0f, dlogits,
            {inp16_.data(), CUDA_R_16BF, C}, 0.0f, dhead_padded_.data(), CUDA_R_32F, C,
            CUBLAS_COMPUTE_32F);
    add_inplace(dhead, dhead_padded_.as<float>(), int64_t{V} * C, stream);
    return;
  }
  const GemmOperand dlogits{scratch, CUDA_R_32F, ld};
  gemm_ex(blas_, stream, false, false, N, C, V, 1.0f, dlogits, {head, CUDA_R_32F, C}, 1.0f, dinp,
          CUDA_R_32F, C, blas_.compute_type());
  gemm_ex(blas_, stream, true, false, V, C, N, 1.0f, dlogits, {inp, CUDA_R_32F, C}, 1.0f, dhead,
          CUDA_R_32F, C, blas_.compute_type());
}

}  // namespace ds::tensor::cuda
