// Layernorm's backward as bf16_kernels.cu launches it (the fused kernel, then the column sums of
// its blocks' partials), on the CPU emulation of CUDA, for the emulated kernel tests.
#pragma once

#include <vector>

#include "tensor/cuda/op_kernels.cuh"

// dinp = dresidual + the input gradient (dresidual == dinp: +=), dweight and dbias (stored in S)
// += theirs, from dout stored in G, with `warps` warps a block.
template <typename S, typename G>
void emulated_layernorm_backward(S* dinp, const S* dresidual, S* dweight, S* dbias, const G* dout,
                                 const S* inp, const S* weight, const float* mean,
                                 const float* rstd, int N, int C, int warps) {
  namespace k = ds::tensor::cuda::op_kernels;
  using ds::tensor::cuda::detail::blocks_for;
  using Rows = k::RowsTerm<float>;
  const k::LayernormBackwardLaunch launch(N, C, warps);
  std::vector<float> partials(2 * static_cast<size_t>(launch.blocks) * C);
  ds_emulated_cuda::launch(k::layernorm_backward_kernel<S, G>, dim3{unsigned(launch.blocks)},
                           dim3{unsigned(launch.warps * k::kWarp)}, launch.shared_bytes, dinp,
                           dresidual, partials.data(), dout, inp, weight, mean, rstd, N, C,
                           launch.rows);
  const dim3 columns{blocks_for(C, k::kColumnWidth)}, column_block{k::kColumnWidth, k::kColumnRows};
  const float* weight_sums = partials.data();
  const float* bias_sums = weight_sums + static_cast<size_t>(launch.blocks) * C;
  ds_emulated_cuda::launch(k::column_sum_kernel<S, Rows>, columns, column_block, 0, dweight,
                           launch.blocks, C, Rows{weight_sums, C});
  ds_emulated_cuda::launch(k::column_sum_kernel<S, Rows>, columns, column_block, 0, dbias,
                           launch.blocks, C, Rows{bias_sums, C});
}
