// The tensor-core flash attention kernels (tensor_core_attention_kernels.cuh) built with the host
// compiler against the CPU emulation of CUDA in emulated_cuda/ (a host thread per GPU thread,
// barriers for the warp and block synchronisation, mma.sync as fp32 sums of bf16 products),
// against the CPU attention kernels. This checks their tiling, causal masking, online softmax
// and synchronisation on machines without a GPU; the cuda test of the same name checks them on
// one, with the same thresholds.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <vector>

#include "attention_reference.h"
#include "tensor/cuda/tensor_core_attention_kernels.cuh"

namespace {

using namespace ds_parity_test;
namespace tc = ds::tensor::cuda::tc_attention;

using Bf16 = tc::Bf16;

// The bf16 copy of one tensor per head, as TensorCoreAttention makes it.
struct HeadMajorCopy {
  std::vector<Bf16> rows;
  tc::HeadMajor view() { return {rows.data()}; }
  HeadMajorCopy(const float* src, int64_t batch_stride, int64_t row_stride, int B, int T, int Tp,
                int NH, int hs)
      : rows(size_t(B) * NH * Tp * hs) {
    const dim3 grid{static_cast<unsigned>(Tp / tc::kRows), static_cast<unsigned>(NH),
                    static_cast<unsigned>(B)};
    ds_emulated_cuda::launch(tc::head_major_kernel, grid, dim3{tc::kThreads}, 0, view(), src,
                             batch_stride, row_stride, T, Tp, NH, hs);
  }
};

// Runs the forward, then the two backward kernels as TensorCoreAttention launches them, for head
// size F·16, against the CPU kernels.
template <int F>
void check_against_cpu(int B, int T, int NH) {
  const int hs = F * tc::kFrag, C = NH * hs;
  INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
  const AttentionReference want(B, T, C, NH);
  const unsigned blocks = ds::tensor::cuda::detail::blocks_for(T, tc::kRows);
  const int Tp = static_cast<int>(blocks) * tc::kRows;
  const dim3 grid{blocks, static_cast<unsigned>(NH), static_cast<unsigned>(B)};
  const dim3 block{tc::kThreads};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const float* qkv = want.qkv.data();
  const int64_t batch = int64_t{T} * 3 * C;
  HeadMajorCopy q(qkv, batch, 3 * C, B, T, Tp, NH, hs);
  HeadMajorCopy k(qkv + C, batch, 3 * C, B, T, Tp, NH, hs);
  HeadMajorCopy v(qkv + 2 * C, batch, 3 * C, B, T, Tp, NH, hs);
  HeadMajorCopy dout(want.dout.data(), int64_t{T} * C, C, B, T, Tp, NH, hs);

  Vec out = random_vec(want.out.size(), 35);  // garbage the kernel must overwrite
  Vec lse(want.lse.size());
  ds_emulated_cuda::launch(tc::forward_kernel<F>, grid, block,
                           tc::shared_bytes<tc::ForwardShared<F>>(), out.data(), lse.data(),
                           q.view(), k.view(), v.view(), T, Tp, C, NH, scale);
  check_parity("forward out", out, want.out, kTensorCoreOutError);
  check_parity("forward lse", lse, want.lse, kTensorCoreLseError);

  const Vec row_dot = want.row_dot(out);
  Vec dqkv = want.dqkv_start;
  const float* log_sum_exp = lse.data();
  ds_emulated_cuda::launch(tc::dq_kernel<F>, grid, block, tc::shared_bytes<tc::DqShared<F>>(),
                           dqkv.data(), dout.view(), log_sum_exp, row_dot.data(), q.view(),
                           k.view(), v.view(), T, Tp, C, NH, scale);
  ds_emulated_cuda::launch(tc::dkv_kernel<F>, grid, block, tc::shared_bytes<tc::DkvShared<F>>(),
                           dqkv.data(), dout.view(), log_sum_exp, row_dot.data(), q.view(),
                           k.view(), v.view(), T, Tp, C, NH, scale);
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
