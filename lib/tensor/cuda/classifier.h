// The LM head of a training step on the GPU (Ops::classifier_forward and classifier_backward):
// the logits GEMM, the fused softmax cross-entropy over them in place, and the backward's two
// GEMMs, in a layout of its own:
// - Rows padded to a multiple of 128 elements (GPT-2's vocabulary, 50257, is odd; padded, 50304
//   as llm.c pads it). The GEMMs' rows then start 16-byte aligned, as the tensor cores' vector
//   loads want. In bf16 runs the vocabulary dimension of every GEMM is the padded one too: the
//   bf16 copy of the head has zero rows past V, so the logits' padding is zero, and the
//   cross-entropy, which reads and rewrites only the first V columns, leaves it zero for the
//   backward. An odd dimension costs cuBLAS its fast kernels (dsbench gemm on an H100, bf16,
//   N = 16384: the forward GEMM at 98 TFLOP/s with V = 50257 against 707 with 50304, the two
//   backward ones at 208 against 718). The weight gradient goes through an fp32 scratch [padded V,
//   C] and its first V rows are added to dhead. fp32 runs pad only the rows.
// - In bf16 runs the logits and their gradient are stored in bf16, and the GEMMs take the input
//   and the head weights rounded to bf16 (as the other matmuls of such a run round theirs,
//   bf16_matmul.h) and accumulate in fp32; the input and weight gradients come
//   out in fp32. This is PyTorch's autocast: a bf16 matmul's output (the logits) is bf16, and
//   cross-entropy computes in fp32 from it. It halves the traffic of the largest activation,
//   [B·T, V], which the forward writes and then reads and rewrites, and the backward reads
//   twice.
// - Otherwise fp32 at the run's MatmulPrecision, as the other matmuls.
//
// The bf16 copies of the input and the head, and the padded weight gradient, live in buffers
// that grow once to the largest shape, so after the first step nothing is allocated. Not
// thread-safe; one per CudaOps.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tensor/cuda/device_buffer.h"

namespace ds::tensor::cuda {

class Blas;

class Classifier {
 public:
  // bf16_logits: keep the logits in bf16 (bf16 runs on a GPU with bf16 tensor cores).
  Classifier(Blas& blas, bool bf16_logits) : blas_(blas), bf16_logits_(bf16_logits) {}

  bool bf16_logits() const { return bf16_logits_; }
  static int64_t padded(int V) { return (int64_t{V} + kRowAlign - 1) / kRowAlign * kRowAlign; }
  int64_t scratch_floats(int N, int V) const;

  // As Ops::classifier_forward and classifier_backward, on `stream`.
  void forward(float* losses, float* scratch, const float* inp, const float* head,
               const int32_t* targets, float dloss, int N, int C, int V, cudaStream_t stream);
  void backward(float* dinp, float* dhead, const float* scratch, const float* inp,
                const float* head, int N, int C, int V, cudaStream_t stream);

 private:
  static constexpr int64_t kRowAlign = 128;  // elements: a multiple of every GEMM tile width

  // inp and head rounded to bf16 into inp16_ and head16_, the head's rows from V to padded(V)
  // zero.
  void round_operands(const float* inp, const float* head, int N, int C, int V,
                      cudaStream_t stream);

  Blas& blas_;
  bool bf16_logits_;
  DeviceBuffer inp16_, head16_;
  DeviceBuffer dhead_padded_;  // fp32 [padded(V), C], bf16 runs' weight-gradient GEMM output
};

}  // namespace ds::tensor::cuda
