// The tensor-core flash attention kernels (tensor_core_attention_kernels.cuh) built with the host
// compiler against the CPU emulation of CUDA in emulated_cuda/ (a host thread per GPU thread,
// barriers for the warp and block synchronisation, mma.sync as fp32 sums of bf16 products),
// against the CPU attention kernels. This checks their tiling, causal masking, online softmax
// and synchronisation on machines without a GPU; the cuda test of the same name checks them on
// one, with the same thresholds.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "attention_reference.h"
#include "tensor/cuda/tensor_core_attention_kernels.cuh"

namespace {

using namespace ds_parity_test;
namespace tc = ds::tensor::cuda::tc_attention;

using Bf16 = tc::Bf16;

using Bf16Vec = std::vector<Bf16>;

Bf16Vec to_bf16(const Vec& x) {
  Bf16Vec rounded(x.size());
  for (size_t i = 0; i < x.size(); ++i) rounded[i] = __float2bfloat16(x[i]);
  return rounded;
}
Vec to_f32(const Bf16Vec& x) {
  Vec widened(x.size());
  for (size_t i = 0; i < x.size(); ++i) widened[i] = __bfloat162float(x[i]);
  return widened;
}

// The column sums of rows [N][columns], in double, as floats.
Vec column_sums(const Vec& rows, size_t columns) {
  std::vector<double> sums(columns, 0.0);
  for (size_t i = 0; i < rows.size(); ++i) sums[i % columns] += rows[i];
  return Vec(sums.begin(), sums.end());
}

// Runs the forward, then the two backward kernels as TensorCoreAttention launches them, for head
// size F·16 and results in Out (fp32: out written and dqkv accumulated, as the Ops contracts;
// bf16: both written), against the CPU kernels. The operands are read in place from bf16 qkv and
// dout, whose rows past T (the next batch row's) must not leak into a partial tile. The backward
// kernels also write the qkv bias gradient's partial sums (the bf16 attention block asks for them;
// with fp32 results they are the sums of what the kernels add): their column sums must be those of
// the gradient, and every variant's the same bit for bit.
template <int F, typename Out>
void check_against_cpu(int B, int T, int NH) {
  constexpr bool kFp32 = std::is_same_v<Out, float>;
  const int hs = F * tc::kFrag, C = NH * hs;
  INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH << (kFp32 ? " fp32" : " bf16"));
  const AttentionReference want(B, T, C, NH);
  const dim3 grid{ds::tensor::cuda::detail::blocks_for(T, tc::kRows), static_cast<unsigned>(NH),
                  static_cast<unsigned>(B)};
  const dim3 block{tc::kThreads};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const Bf16Vec qkv = to_bf16(want.qkv), dout = to_bf16(want.dout);
  const tc::Operands x(qkv.data(), dout.data(), T, C, NH);
  const auto garbage = [](size_t n, uint32_t seed) {  // what the kernels must overwrite
    if constexpr (kFp32) {
      return random_vec(n, seed);
    } else {
      return to_bf16(random_vec(n, seed));
    }
  };
  const auto as_f32 = [](const std::vector<Out>& v) {
    if constexpr (kFp32) {
      return v;
    } else {
      return to_f32(v);
    }
  };

  std::vector<Out> out = garbage(want.out.size(), 35);
  Vec lse(want.lse.size());
  ds_emulated_cuda::launch(tc::forward_kernel<F, 1, Out>, grid, block,
                           tc::shared_bytes<tc::ForwardShared<F, 1>>(), out.data(), lse.data(), x.q,
                           x.k, x.v, T, C, NH, scale);
  check_parity("forward out", as_f32(out), want.out, kTensorCoreOutError);
  check_parity("forward lse", lse, want.lse, kTensorCoreLseError);
  if constexpr (tc::kHasVariants<F>) {
    // 128-row blocks, two row fragments a warp: the same numbers bit for bit.
    std::vector<Out> out_128 = garbage(want.out.size(), 36);
    Vec lse_128 = random_vec(want.lse.size(), 37);
    const dim3 grid_128{ds::tensor::cuda::detail::blocks_for(T, tc::kBlockRows<2>), grid.y, grid.z};
    ds_emulated_cuda::launch(tc::forward_kernel<F, 2, Out>, grid_128, block,
                             tc::shared_bytes<tc::ForwardShared<F, 2>>(), out_128.data(),
                             lse_128.data(), x.q, x.k, x.v, T, C, NH, scale);
    CHECK(as_f32(out_128) == as_f32(out));
    CHECK(lse_128 == lse);
  }

  const Vec row_dot = want.row_dot(as_f32(out));
  std::vector<Out> dqkv = kFp32 ? std::vector<Out>(want.dqkv_start.begin(), want.dqkv_start.end())
                                : garbage(want.qkv.size(), 38);
  Vec gradient = want.dqkv;  // without the start that fp32 results are added to
  for (size_t i = 0; i < gradient.size(); ++i) gradient[i] -= want.dqkv_start[i];
  const Vec& expected = kFp32 ? want.dqkv : gradient;
  const float* log_sum_exp = lse.data();
  const std::vector<Out> dqkv_start = dqkv;
  // The partials (garbage the kernels must overwrite), then a row that they must not touch.
  const size_t partial_floats = size_t(tc::bias_partial_rows(B, T)) * 3 * C;
  constexpr float kUntouched = 12345.0f;
  const auto guarded = [&](uint32_t seed) {
    Vec partials = random_vec(partial_floats, seed);
    partials.resize(partial_floats + size_t(3) * C, kUntouched);
    return partials;
  };
  const auto written = [&](const Vec& partials) {
    REQUIRE(std::all_of(partials.begin() + partial_floats, partials.end(),
                        [](float value) { return value == kUntouched; }));
    return Vec(partials.begin(), partials.begin() + partial_floats);
  };
  Vec partials = guarded(39);
  ds_emulated_cuda::launch(tc::dq_kernel<F, 1, Out>, grid, block,
                           tc::shared_bytes<tc::DqShared<F, 1>>(), dqkv.data(), partials.data(),
                           x.dout, log_sum_exp, row_dot.data(), x.q, x.k, x.v, T, C, NH, scale);
  if constexpr (tc::kHasVariants<F>) {
    // dQ in 128-row blocks: the same numbers bit for bit.
    std::vector<Out> dqkv_128 = dqkv_start;
    Vec partials_128 = guarded(40);
    const dim3 grid_128{ds::tensor::cuda::detail::blocks_for(T, tc::kBlockRows<2>), grid.y, grid.z};
    ds_emulated_cuda::launch(tc::dq_kernel<F, 2, Out>, grid_128, block,
                             tc::shared_bytes<tc::DqShared<F, 2>>(), dqkv_128.data(),
                             partials_128.data(), x.dout, log_sum_exp, row_dot.data(), x.q, x.k,
                             x.v, T, C, NH, scale);
    CHECK(as_f32(dqkv_128) == as_f32(dqkv));
    // dQ writes the partials' first C columns of each row (K's and V's are dK/dV's).
    const auto q_columns = [C](const Vec& rows) {
      Vec q;
      for (size_t i = 0; i < rows.size(); ++i) {
        if (i % (size_t(3) * C) < size_t(C)) q.push_back(rows[i]);
      }
      return q;
    };
    CHECK(q_columns(written(partials_128)) == q_columns(written(partials)));
  }
  const std::vector<Out> dq_done = dqkv;
  const Vec dq_partials = partials;
  ds_emulated_cuda::launch(tc::dkv_kernel<F, false, Out>, grid, block,
                           tc::shared_bytes<tc::DkvShared<F>>(), dqkv.data(), partials.data(),
                           x.dout, log_sum_exp, row_dot.data(), x.q, x.k, x.v, T, C, NH, scale);
  check_parity("backward dqkv", as_f32(dqkv), expected, kTensorCoreDqkvError);
  const Vec bias = column_sums(written(partials), size_t(3) * C);
  check_parity("backward dqkv's bias sums", bias, column_sums(gradient, size_t(3) * C),
               kTensorCoreDqkvError);
  if constexpr (!kFp32) {
    // The sums of exactly the values written, up to the order of fp32 additions.
    check_parity("backward dqkv's bias sums of dqkv", bias,
                 column_sums(as_f32(dqkv), size_t(3) * C), 1e-5);
  }
  if constexpr (tc::kHasVariants<F>) {
    // dK/dV with its fragments held in registers: the same numbers bit for bit.
    std::vector<Out> dqkv_held = dq_done;
    Vec partials_held = dq_partials;
    ds_emulated_cuda::launch(tc::dkv_kernel<F, true, Out>, grid, block,
                             tc::shared_bytes<tc::DkvShared<F>>(), dqkv_held.data(),
                             partials_held.data(), x.dout, log_sum_exp, row_dot.data(), x.q, x.k,
                             x.v, T, C, NH, scale);
    CHECK(as_f32(dqkv_held) == as_f32(dqkv));
    CHECK(partials_held == partials);
  }
}

}  // namespace

// T = 7 (one partial tile), 65 and 130 (a tile and a row or two), 100, 200: every causal branch,
// for both block shapes of the forward and dQ (200: 128-row blocks whose first warps skip the last
// key tile below T, and whose last has rows past T).
TEST_CASE("emulated tensor-core attention at head size 16", "[tensor_core_attention]") {
  check_against_cpu<1, float>(2, 7, 2);
  check_against_cpu<1, float>(1, 130, 1);
  check_against_cpu<1, float>(1, 200, 1);
}
TEST_CASE("emulated tensor-core attention at head size 48", "[tensor_core_attention]") {
  check_against_cpu<3, float>(2, 65, 2);
}
TEST_CASE("emulated tensor-core attention at head size 64 (GPT-2)", "[tensor_core_attention]") {
  check_against_cpu<4, float>(1, 130, 2);
}
TEST_CASE("emulated tensor-core attention at head size 128", "[tensor_core_attention]") {
  check_against_cpu<8, float>(1, 100, 1);
}
// bf16 results (the bf16 attention block's): out and dqkv written, rounded once.
TEST_CASE("emulated tensor-core attention with bf16 results", "[tensor_core_attention]") {
  check_against_cpu<1, tc::Bf16>(2, 7, 2);
  check_against_cpu<4, tc::Bf16>(2, 70, 2);
}
