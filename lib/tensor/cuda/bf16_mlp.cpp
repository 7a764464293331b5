#include "tensor/cuda/bf16_mlp.h"

#include <cuda_bf16.h>

#include <cstdint>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/bf16_region.h"
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/kernels.h"
#include "tensor/cuda/lt_matmul.h"
#include "tensor/cuda/staged_output.h"

namespace ds::tensor::cuda {

namespace {

using bf16 = __nv_bfloat16;

}  // namespace

int64_t Bf16Mlp::saved_floats(int N, int C, int H) {
  return 3 + int64_t{N} * H + (int64_t{N} * C + 1) / 2;
}

bool Bf16Mlp::supports(int N, int C, int H) {
  if (H <= 0 || H % 8 != 0) return false;
  const LtMatmul::Storage bf16_out{DType::kBF16, DType::kBF16, DType::kF32};
  const LtMatmul::Storage fp32_out{DType::kBF16, DType::kF32, DType::kF32};
  // The expansion writes bf16 and its input gradient fp32; the projection the other way round.
  return lt_.supports(N, C, H, WeightLayout::kInOut, bf16_out) &&
         lt_.supports(N, C, H, WeightLayout::kInOut, fp32_out) &&
         lt_.supports(N, H, C, WeightLayout::kInOut, bf16_out) &&
         lt_.supports(N, H, C, WeightLayout::kInOut, fp32_out);
}

void Bf16Mlp::forward(float* out, float* saved, const float* inp, const float* residual,
                      const float* w_fc, const float* b_fc, const float* w_proj,
                      const float* b_proj, int N, int C, int H, cudaStream_t stream) {
  if (N == 0) return;
  const int64_t NH = int64_t{N} * H;
  bf16* pre = bf16_from(saved);
  bf16* act = pre + NH;
  bf16* inp16 = act + NH;  // kept for the expansion's weight gradient
  from_f32(inp16, DType::kBF16, inp, int64_t{N} * C, stream);
  const void* w_fc16 = rounded_to_bf16(w_fc, int64_t{C} * H, w_fc16_, stream);
  const void* b_fc16 = rounded_to_bf16(b_fc, H, b_fc16_, stream);
  const void* w_proj16 = rounded_to_bf16(w_proj, int64_t{H} * C, w_proj16_, stream);
  lt_.forward_gelu(act, pre, inp16, w_fc16, b_fc16, N, C, H, WeightLayout::kInOut, DType::kBF16,
                   stream);

  const float* bias = aligned_input(b_proj, C, b_proj_, stream);
  const float* onto = aligned_input(residual, int64_t{N} * C, residual_, stream);
  const StagedOutput y = StagedOutput::writing(out, int64_t{N} * C, staged_[0]);
  lt_.forward_residual(y.at, onto, act, w_proj16, bias, N, H, C, WeightLayout::kInOut,
                       {DType::kBF16, DType::kF32, DType::kF32}, stream);
  y.finish(stream);
}

void Bf16Mlp::backward(float* dinp, float* dw_fc, float* db_fc, float* dw_proj, float* db_proj,
                       float* scratch, const float* dout, const float* saved, const float* /*inp*/,
                       const float* w_fc, const float* w_proj, int N, int C, int H,
                       cudaStream_t stream) {
  if (N == 0) return;
  const int64_t NH = int64_t{N} * H;
  const bf16* pre = bf16_from(saved);
  const bf16* act = pre + NH;
  const bf16* inp16 = act + NH;
  bf16* dpre = bf16_from(scratch);
  // Rounded again rather than kept from the forward: the copies are shared by every layer.
  const void* dout16 = rounded_to_bf16(dout, int64_t{N} * C, dout16_, stream);
  const void* w_proj16 = rounded_to_bf16(w_proj, int64_t{H} * C, w_proj16_, stream);
  const void* w_fc16 = rounded_to_bf16(w_fc, int64_t{C} * H, w_fc16_, stream);

  // Through the projection and GELU: dpre in bf16, the projection's weight gradient in fp32.
  // The bias gradients are column sums (fixed order, fp32, any alignment): db_proj's of the fp32
  // dout, db_fc's of dpre.
  const auto g_proj = StagedOutput::accumulating(dw_proj, int64_t{H} * C, staged_[1], stream);
  lt_.backward_gelu(dpre, g_proj.at, nullptr, dout16, act, w_proj16, pre, N, H, C,
                    WeightLayout::kInOut, {DType::kBF16, DType::kBF16, DType::kF32}, stream);
  g_proj.finish(stream);
  if (db_proj != nullptr) {
    mixed::matmul_bias_backward(db_proj, DType::kF32, dout, DType::kF32, N, C, stream);
  }

  // Through the expansion: the input gradient (written) and the expansion's weight gradient in
  // fp32.
  const LtMatmul::Storage fp32_out{DType::kBF16, DType::kF32, DType::kF32};
  if (dinp != nullptr) {
    const auto g_inp = StagedOutput::writing(dinp, int64_t{N} * C, staged_[0]);
    lt_.input_gradient(g_inp.at, dpre, w_fc16, N, C, H, WeightLayout::kInOut, fp32_out, stream);
    g_inp.finish(stream);
  }
  const auto g_fc = StagedOutput::accumulating(dw_fc, int64_t{C} * H, staged_[2], stream);
  lt_.backward(nullptr, g_fc.at, nullptr, dpre, inp16, nullptr, N, C, H, WeightLayout::kInOut,
               fp32_out, stream);
  g_fc.finish(stream);
  if (db_fc != nullptr) {
    mixed::matmul_bias_backward(db_fc, DType::kF32, dpre, DType::kBF16, N, H, stream);
  }
}

}  // namespace ds::tensor::cuda
