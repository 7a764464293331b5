// Layernorm as bf16_kernels.cu launches it, on the CPU emulation of CUDA, for the emulated kernel
// tests: by op_kernels.cuh's kernels (the backward's column sums in shared memory, `warps` warps a
// block), or by layernorm_row_kernels.cuh's (rows in registers; the backward on at most `blocks`
// blocks), each backward followed by the column sums of its blocks' partials.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <vector>

#include "tensor/cuda/layernorm_row_kernels.cuh"
#include "tensor/cuda/op_kernels.cuh"

// Which kernels: the row kernels where `rows` (and layernorm_rows_apply allows them).
struct EmulatedLayernorm {
  bool rows = false;
  int warps = 4;                                                // column kernel's backward
  int blocks = ds::tensor::cuda::op_kernels::kLayernormBlocks;  // row kernel's backward, at most
};

template <typename S, typename Out>
void emulated_layernorm_forward(Out* out, float* mean, float* rstd, const S* inp, const S* weight,
                                const S* bias, int N, int C, EmulatedLayernorm how = {}) {
  namespace k = ds::tensor::cuda::op_kernels;
  const dim3 grid{ds::tensor::cuda::detail::blocks_for(N, k::kRowsPerBlock)}, block{k::kBlock};
  if (!how.rows) {
    ds_emulated_cuda::launch(k::layernorm_forward_kernel<S, Out>, grid, block, 0, out, mean, rstd,
                             inp, weight, bias, N, C, 1e-5f);
    return;
  }
  REQUIRE(k::layernorm_rows_apply(C, {out, inp, weight, bias}));
  k::with_lane_octets(C, [&](auto octets) {
    ds_emulated_cuda::launch(k::layernorm_forward_rows_kernel<decltype(octets)::value, S, Out>,
                             grid, block, 0, out, mean, rstd, inp, weight, bias, N, C, 1e-5f);
  });
}

// dinp = dresidual + the input gradient (dresidual == dinp: +=), dweight and dbias (stored in S)
// += theirs, from dout stored in G. With `dinp16` (the row kernels only), dinp is also handed on
// as bf16_kernels.cu hands it: rounded into dinp16, its column sums written into dinp_sums [C].
template <typename S, typename G>
void emulated_layernorm_backward(S* dinp, const S* dresidual, S* dweight, S* dbias, const G* dout,
                                 const S* inp, const S* weight, const float* mean,
                                 const float* rstd, int N, int C, EmulatedLayernorm how = {},
                                 __nv_bfloat16* dinp16 = nullptr, float* dinp_sums = nullptr) {
  namespace k = ds::tensor::cuda::op_kernels;
  using ds::tensor::cuda::detail::blocks_for;
  using Rows = k::RowsTerm<float>;
  const k::LayernormBackwardLaunch launch =
      how.rows ? k::LayernormBackwardLaunch(N, C, k::kLayernormRowsWarps, how.blocks)
               : k::LayernormBackwardLaunch(N, C, how.warps);
  const bool hand_on = dinp16 != nullptr;
  REQUIRE((how.rows || !hand_on));
  std::vector<float> partials((hand_on ? 3 : 2) * static_cast<size_t>(launch.blocks) * C);
  if (how.rows) {
    REQUIRE(k::layernorm_rows_apply(C, {dinp, dresidual, dout, inp, weight, dinp16}));
    k::with_lane_octets(C, [&](auto octets) {
      constexpr int K = decltype(octets)::value;
      const auto plain = k::layernorm_backward_rows_kernel<K, S, G, false>;
      ds_emulated_cuda::launch(hand_on ? k::layernorm_backward_rows_kernel<K, S, G, true> : plain,
                               dim3{unsigned(launch.blocks)},
                               dim3{unsigned(k::kLayernormRowsWarps * k::kWarp)},
                               k::layernorm_rows_shared_bytes(C, hand_on), dinp, dinp16, dresidual,
                               partials.data(), dout, inp, weight, mean, rstd, N, C, launch.rows);
    });
  } else {
    ds_emulated_cuda::launch(k::layernorm_backward_kernel<S, G>, dim3{unsigned(launch.blocks)},
                             dim3{unsigned(launch.warps * k::kWarp)}, launch.shared_bytes, dinp,
                             dresidual, partials.data(), dout, inp, weight, mean, rstd, N, C,
                             launch.rows);
  }
  const dim3 columns{blocks_for(C, k::kColumnWidth)}, column_block{k::kColumnWidth, k::kColumnRows};
  const float* weight_sums = partials.data();
  const float* bias_sums = weight_sums + static_cast<size_t>(launch.blocks) * C;
  ds_emulated_cuda::launch(k::column_sum_kernel<S, Rows>, columns, column_block, 0, dweight,
                           launch.blocks, C, Rows{weight_sums, C});
  ds_emulated_cuda::launch(k::column_sum_kernel<S, Rows>, columns, column_block, 0, dbias,
                           launch.blocks, C, Rows{bias_sums, C});
  if (hand_on) {
    std::fill(dinp_sums, dinp_sums + C, 0.0f);
    ds_emulated_cuda::launch(k::column_sum_kernel<float, Rows>, columns, column_block, 0, dinp_sums,
                             launch.blocks, C,
                             Rows{bias_sums + static_cast<size_t>(launch.blocks) * C, C});
  }
}
