#include "tensor/cuda/bf16_attention_block.h"

#include <cuda_bf16.h>

#include <utility>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/bf16_region.h"
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/lt_matmul.h"
#include "tensor/cuda/staged_output.h"
#include "tensor/cuda/tensor_core_attention.h"

namespace ds::tensor::cuda {

namespace {

using bf16 = __nv_bfloat16;

const LtMatmul::Storage kBf16Out{DType::kBF16, DType::kBF16, DType::kF32};
const LtMatmul::Storage kFp32Out{DType::kBF16, DType::kF32, DType::kF32};

// The saved region's tensors: qkv [N,3C], y [N,C] and the rounded input [N,C] in bf16 from its
// first 16-byte boundary (each stays aligned: C is a multiple of 16 for the tensor-core
// attention), then lse [B,NH,T].
template <typename Float>
struct Saved {
  decltype(bf16_from(std::declval<Float*>())) qkv, y, inp;
  Float* lse;
  Saved(Float* region, int64_t N, int C)
      : qkv(bf16_from(region)),
        y(qkv + 3 * N * C),
        inp(y + N * C),
        lse(reinterpret_cast<Float*>(inp + N * C)) {}
};

}  // namespace

bool Bf16AttentionBlock::supports(int N, int C) {
  // qkv writes bf16, the projection fp32; the backward's dy is bf16 and dinp fp32.
  return lt_.supports(N, C, 3 * C, WeightLayout::kInOut, kBf16Out) &&
         lt_.supports(N, C, 3 * C, WeightLayout::kInOut, kFp32Out) &&
         lt_.supports(N, C, C, WeightLayout::kInOut, kBf16Out) &&
         lt_.supports(N, C, C, WeightLayout::kInOut, kFp32Out);
}

int64_t Bf16AttentionBlock::saved_floats(int B, int T, int C, int NH) {
  const int64_t N = int64_t{B} * T;
  return 3 + (5 * N * C + 1) / 2 + N * NH;
}

void Bf16AttentionBlock::forward(float* out, float* saved, const float* inp, const float* residual,
                                 const float* w_qkv, const float* b_qkv, const float* w_proj,
                                 const float* b_proj, int B, int T, int C, int NH,
                                 cudaStream_t stream) {
  const int N = B * T;
  if (N == 0) return;
  const int64_t NC = int64_t{N} * C;
  const Saved<float> s(saved, N, C);
  from_f32(s.inp, DType::kBF16, inp, NC, stream);  // kept for the weight gradient
  const void* w_qkv16 = rounded_to_bf16(w_qkv, 3 * int64_t{C} * C, w_qkv16_, stream);
  const void* b_qkv16 = rounded_to_bf16(b_qkv, 3 * C, b_qkv16_, stream);
  lt_.forward(s.qkv, s.inp, w_qkv16, b_qkv16, N, C, 3 * C, WeightLayout::kInOut, kBf16Out, stream);

  attention_.forward(s.y, s.lse, s.qkv, B, T, C, NH, stream);

  const void* w_proj16 = rounded_to_bf16(w_proj, int64_t{C} * C, w_proj16_, stream);
  const float* bias = aligned_input(b_proj, C, b_proj_, stream);
  const float* onto = aligned_input(residual, NC, residual_, stream);
  const StagedOutput projected = StagedOutput::writing(out, NC, staged_[0]);
  lt_.forward_residual(projected.at, onto, s.y, w_proj16, bias, N, C, C, WeightLayout::kInOut,
                       kFp32Out, stream);
  projected.finish(stream);
}

void Bf16AttentionBlock::backward(float* dinp, float* dw_qkv, float* db_qkv, float* dw_proj,
                                  float* db_proj, const Ops::AttentionBlockScratch& scratch,
                                  const float* dout, const float* saved, const float* /*inp*/,
                                  const float* w_qkv, const float* w_proj, int B, int T, int C,
                                  int NH, cudaStream_t stream) {
  const int N = B * T;
  if (N == 0) return;
  const int64_t NC = int64_t{N} * C;
  const Saved<const float> s(saved, N, C);
  bf16* dy = bf16_from(scratch.d_out);
  bf16* dqkv = bf16_from(scratch.d_qkv);
  float* row_dot = scratch.d_att;

  // Through the projection: dy in bf16, the projection's weight gradient from the saved y. The
  // bias gradient is a fixed-order fp32 column sum of the fp32 dout.
  const void* dout16 = rounded_to_bf16(dout, NC, dout16_, stream);
  const void* w_proj16 = rounded_to_bf16(w_proj, int64_t{C} * C, w_proj16_, stream);
  lt_.input_gradient(dy, dout16, w_proj16, N, C, C, WeightLayout::kInOut, kBf16Out, stream);
  const auto g_proj = StagedOutput::accumulating(dw_proj, int64_t{C} * C, staged_[1], stream);
  lt_.backward(nullptr, g_proj.at, nullptr, dout16, s.y, nullptr, N, C, C, WeightLayout::kInOut,
               kFp32Out, stream);
  g_proj.finish(stream);
  if (db_proj != nullptr) {
    mixed::matmul_bias_backward(db_proj, DType::kF32, dout, DType::kF32, N, C, stream);
  }

  attention_.backward(dqkv, row_dot, dy, s.qkv, s.y, s.lse, B, T, C, NH, stream);

  // Through qkv: the input gradient (written) and the weight gradient in fp32; db_qkv from the
  // bf16 dqkv.
  if (dinp != nullptr) {
    const void* w_qkv16 = rounded_to_bf16(w_qkv, 3 * int64_t{C} * C, w_qkv16_, stream);
    const auto g_inp = StagedOutput::writing(dinp, NC, staged_[0]);
    lt_.input_gradient(g_inp.at, dqkv, w_qkv16, N, C, 3 * C, WeightLayout::kInOut, kFp32Out,
                       stream);
    g_inp.finish(stream);
  }
  const auto g_qkv = StagedOutput::accumulating(dw_qkv, 3 * int64_t{C} * C, staged_[2], stream);
  lt_.backward(nullptr, g_qkv.at, nullptr, dqkv, s.inp, nullptr, N, C, 3 * C, WeightLayout::kInOut,
               kFp32Out, stream);
  g_qkv.finish(stream);
  if (db_qkv != nullptr) {
    mixed::matmul_bias_backward(db_qkv, DType::kF32, dqkv, DType::kBF16, N, 3 * C, stream);
  }
}

}  // namespace ds::tensor::cuda
