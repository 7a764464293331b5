// The tensor-core flash attention kernels (tensor_core_attention_kernels.cuh) built with the host
// compiler against the CPU emulation of CUDA in emulated_cuda/ (a host thread per GPU thread,
// barriers for the warp and block synchronisation, mma.sync as fp32 sums of bf16 products),
// against the CPU attention kernels. This checks their tiling, causal masking, online softmax
// and synchronisation on machines without a GPU; the cuda test of the same name checks them on
// one, with the same thresholds.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>

#include "attention_reference.h"
#include "tensor/cuda/tensor_core_attention_kernels.cuh"

namespace {

using namespace ds_parity_test;
namespace tc = ds::tensor::cuda::tc_attention;

// Runs the forward, then the two backward kernels as tensor_core_attention_backward launches
// them, for head size F·16, against the CPU kernels.
template <int F>
void check_against_cpu(int B, int T, int NH) {
  const int C = NH * F * tc::kFrag;
  INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
  const size_t forward_bytes = tc::shared_bytes<tc::ForwardShared<F>>();
  const size_t dq_bytes = tc::shared_bytes<tc::DqShared<F>>();
  const size_t dkv_bytes = tc::shared_bytes<tc::DkvShared<F>>();
  const AttentionReference want(B, T, C, NH);
  const dim3 grid{ds::tensor::cuda::detail::blocks_for(T, tc::kRows), static_cast<unsigned>(NH),
                  static_cast<unsigned>(B)};
  const dim3 block{tc::kThreads};
  const float scale = 1.0f / std::sqrt(static_cast<float>(F * tc::kFrag));

  Vec out = random_vec(want.out.size(), 35);  // garbage the kernel must overwrite
  Vec lse(want.lse.size());
  const float* qkv = want.qkv.data();
  ds_emulated_cuda::launch(tc::forward_kernel<F>, grid, block, forward_bytes, out.data(),
                           lse.data(), qkv, T, C, NH, scale);
  check_parity("forward out", out, want.out, kTensorCoreOutError);
  check_parity("forward lse", lse, want.lse, kTensorCoreLseError);

  const Vec row_dot = want.row_dot(out);
  Vec dqkv = want.dqkv_start;
  ds_emulated_cuda::launch(tc::dq_kernel<F>, grid, block, dq_bytes, dqkv.data(), want.dout.data(),
                           static_cast<const float*>(lse.data()), row_dot.data(), qkv, T, C, NH,
                           scale);
  ds_emulated_cuda::launch(tc::dkv_kernel<F>, grid, block, dkv_bytes, dqkv.data(), want.dout.data(),
                           static_cast<const float*>(lse.data()), row_dot.data(), qkv, T, C, NH,
                           scale);
  check_parity("backward dqkv", dqkv, want.dqkv, kTensorCoreDqkvError);
}

}  // namespace

// T = 7 (one partial tile), 65 and 130 (a tile and a row or two), 100: every causal branch.
TEST_CASE("emulated tensor-core attention at head size 16", "[tensor_core_attention]") {
  check_against_cpu<1>(2, 7, 2);
  check_against_cpu<1>(1, 130, 1);
}
TEST_CASE("emulated tensor-core attention at head size 48", "[tensor_core_attention]") {
  check_against_cpu<3>(1, 65, 2);
}
TEST_CASE("emulated tensor-core attention at head size 64 (GPT-2)", "[tensor_core_attention]") {
  check_against_cpu<4>(1, 130, 2);
}
TEST_CASE("emulated tensor-core attention at head size 128", "[tensor_core_attention]") {
  check_against_cpu<8>(1, 100, 1);
}
