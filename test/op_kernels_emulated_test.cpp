// The fp32 op kernels (the fp32 instances of op_kernels.cuh, and fp32_op_kernels.cuh) built with
// the host compiler against the CPU emulation of CUDA in emulated_cuda/, launched as kernels.cu
// and bf16_kernels.cu launch them, against the CPU kernels at the thresholds of cuda_kernels_test:
// their indexing, row and block reductions and synchronisation, checked on machines without a
// GPU. (The causal softmax and the matmuls come with cuBLAS's GEMMs, and stay with the cuda
// tests.)
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>

#include "emulated_layernorm.h"
#include "emulated_token_buckets.h"
#include "parity_helpers.h"
#include "tensor/cpu/kernels.h"
#include "tensor/cuda/fp32_op_kernels.cuh"

namespace {

using namespace ds_parity_test;
namespace cpu = ds::tensor::cpu;
namespace k = ds::tensor::cuda::op_kernels;
using ds::tensor::cuda::detail::blocks_for;
using ds_emulated_cuda::launch;

// kernels.h's column_sum launch.
template <typename Term>
void column_sum(float* dst, int N, int C, Term term) {
  launch(k::column_sum_kernel<float, Term>, dim3{blocks_for(C, k::kColumnWidth)},
         dim3{k::kColumnWidth, k::kColumnRows}, 0, dst, N, C, term);
}

}  // namespace

TEST_CASE("emulated encoder forward and position gradient", "[op_kernels]") {
  const int B = 2, T = 7, C = 48, V = 97;
  const Tokens tokens = random_tokens(B * T, V, 1);
  const Vec wte = random_vec(size_t(V) * C, 2), wpe = random_vec(size_t(T) * C, 3);
  Vec want(size_t(B) * T * C), got(want.size());
  cpu::encoder_forward(want.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  launch(k::encoder_forward_kernel<float>, dim3{blocks_for(int64_t(got.size()))}, dim3{k::kBlock},
         0, got.data(), tokens.data(), wte.data(), wpe.data(), int64_t{B} * T, T, C);
  check_parity("encoder_forward", got, want, 1e-6);

  const Vec dout = random_vec(want.size(), 4);
  Vec want_dwte = random_vec(wte.size(), 5), got_dwte = want_dwte;
  Vec want_dwpe = random_vec(wpe.size(), 6), got_dwpe = want_dwpe;
  cpu::encoder_backward(want_dwte.data(), want_dwpe.data(), dout.data(), tokens.data(), B, T, C);
  const EmulatedTokenBuckets buckets(tokens);
  launch(k::wte_backward_kernel<float>, dim3{unsigned(buckets.tokens.size()), blocks_for(C)},
         dim3{k::kBlock}, 0, got_dwte.data(), dout.data(), buckets.tokens.data(),
         buckets.offsets.data(), buckets.positions.data(), C);
  check_parity("encoder_backward dwte", got_dwte, want_dwte, 1e-6);
  launch(k::wpe_backward_kernel<float>, dim3{blocks_for(int64_t{T} * C)}, dim3{k::kBlock}, 0,
         got_dwpe.data(), dout.data(), B, T, C);
  check_parity("encoder_backward dwpe", got_dwpe, want_dwpe, 1e-6);
}

TEST_CASE("emulated layernorm", "[op_kernels]") {
  // 14 rows on 3 warps a block: blocks of 3 rows, the last with 2 (no rows for its third warp).
  // The row kernels take widths that are multiples of 8, up to 1024: C = 48 and 40 (a lane's octet
  // or none), 264 (lane 0 two octets), 776 (four); `blocks` makes their warps walk several rows.
  const auto [N, C, warps, blocks] =
      GENERATE(std::tuple{14, 48, 3, 2}, std::tuple{5, 131, 4, 512}, std::tuple{3, 1, 1, 512},
               std::tuple{1100, 40, 4, 7}, std::tuple{9, 264, 2, 1}, std::tuple{6, 776, 4, 512});
  const bool rows = GENERATE(false, true);
  const EmulatedLayernorm how{rows, warps, blocks};
  if (rows && !k::layernorm_rows_apply(C, {})) return;
  INFO("N=" << N << " C=" << C << (rows ? " row kernels" : " column kernels") << " warps=" << warps
            << " blocks=" << blocks);
  const Vec inp = random_vec(size_t(N) * C, 10, -2.0f, 3.0f);
  const Vec weight = random_vec(C, 11), bias = random_vec(C, 12);
  Vec out(inp.size()), mean(N), rstd(N);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), N, C, 1e-5f);
  Vec got = random_vec(out.size(), 19), got_mean(N), got_rstd(N);
  emulated_layernorm_forward(got.data(), got_mean.data(), got_rstd.data(), inp.data(),
                             weight.data(), bias.data(), N, C, how);
  check_parity("layernorm_forward out", got, out, 1e-5);
  check_parity("layernorm_forward mean", got_mean, mean, 1e-5);
  check_parity("layernorm_forward rstd", got_rstd, rstd, 1e-5);

  const Vec dout = random_vec(out.size(), 13);
  Vec dinp = random_vec(inp.size(), 14), dweight = random_vec(C, 15), dbias = random_vec(C, 16);
  Vec got_dinp = dinp, got_dweight = dweight, got_dbias = dbias;
  cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  emulated_layernorm_backward(got_dinp.data(), static_cast<const float*>(got_dinp.data()),
                              got_dweight.data(), got_dbias.data(), dout.data(), inp.data(),
                              weight.data(), mean.data(), rstd.data(), N, C, how);
  check_parity("layernorm_backward dinp", got_dinp, dinp, 1e-5);
  check_parity("layernorm_backward dweight", got_dweight, dweight, 1e-5);
  check_parity("layernorm_backward dbias", got_dbias, dbias, 1e-5);

  // Onto a residual's gradient (Ops::layernorm_backward_onto): dinp is written, its old values
  // unread.
  const Vec dresidual = random_vec(inp.size(), 17);
  Vec onto = dresidual, got_onto = random_vec(inp.size(), 18);
  cpu::layernorm_backward(onto.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  emulated_layernorm_backward(got_onto.data(), dresidual.data(), got_dweight.data(),
                              got_dbias.data(), dout.data(), inp.data(), weight.data(), mean.data(),
                              rstd.data(), N, C, how);
  check_parity("layernorm_backward onto a residual dinp", got_onto, onto, 1e-5);
  check_parity("layernorm_backward onto a residual dweight", got_dweight, dweight, 1e-5);
}

TEST_CASE("emulated GELU", "[op_kernels]") {
  const int64_t N = 1001;
  const Vec inp = random_vec(N, 40, -5.0f, 5.0f), dout = random_vec(N, 42);
  Vec out(N), got(N), dinp = random_vec(N, 43), got_dinp = dinp;
  cpu::gelu_forward(out.data(), inp.data(), N);
  launch(k::gelu_forward_kernel<float>, dim3{blocks_for(N)}, dim3{k::kBlock}, 0, got.data(),
         inp.data(), N);
  check_parity("gelu_forward", got, out, 1e-5);
  cpu::gelu_backward(dinp.data(), inp.data(), dout.data(), N);
  launch(k::gelu_backward_kernel<float>, dim3{blocks_for(N)}, dim3{k::kBlock}, 0, got_dinp.data(),
         inp.data(), dout.data(), N);
  check_parity("gelu_backward", got_dinp, dinp, 1e-5);
}

TEST_CASE("emulated softmax cross-entropy", "[op_kernels]") {
  const int N = 6, V = 1500;  // rows longer than the 512-thread block
  const Vec logits = random_vec(size_t(N) * V, 50, -4.0f, 4.0f);
  Tokens targets = random_tokens(N, V, 51);
  targets[2] = cpu::kIgnoreTarget;
  Vec losses(N), probs(logits.size()), got_losses(N), got_probs(probs.size());
  cpu::softmax_cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N,
                                     V);
  launch(k::softmax_cross_entropy_forward_kernel, dim3{unsigned(N)}, dim3{k::kCrossEntropyBlock}, 0,
         got_losses.data(), got_probs.data(), logits.data(), targets.data(), V);
  check_parity("softmax_cross_entropy_forward losses", got_losses, losses, 1e-5);
  check_parity("softmax_cross_entropy_forward probs", got_probs, probs, 1e-5);
  const Vec forward_losses = got_losses;

  Vec dlogits(logits.size()), got_dlogits(logits.size());
  cpu::softmax_cross_entropy_backward(dlogits.data(), probs.data(), targets.data(), 0.25f, N, V);
  launch(k::softmax_cross_entropy_backward_kernel, dim3{blocks_for(int64_t{N} * V)},
         dim3{k::kBlock}, 0, got_dlogits.data(), static_cast<const float*>(probs.data()),
         targets.data(), 0.25f, int64_t{N}, V);
  check_parity("softmax_cross_entropy_backward", got_dlogits, dlogits, 1e-6);

  // Both in one pass, in place, as a training step runs them.
  Vec fused_losses(N), fused = logits, got_fused = logits;
  cpu::softmax_cross_entropy_fused(fused_losses.data(), fused.data(), fused.data(), targets.data(),
                                   0.25f, N, V);
  launch(k::softmax_cross_entropy_kernel<float>, dim3{unsigned(N)}, dim3{k::kCrossEntropyBlock}, 0,
         got_losses.data(), got_fused.data(), static_cast<const float*>(got_fused.data()),
         targets.data(), 0.25f, V, int64_t{V}, false);
  check_parity("softmax_cross_entropy_fused losses", got_losses, fused_losses, 1e-5);
  check_parity("softmax_cross_entropy_fused dlogits", got_fused, fused, 1e-6);
  // Bit for bit the separate kernels' arithmetic (evaluation's losses are training's).
  Vec chained(logits.size());
  launch(k::softmax_cross_entropy_backward_kernel, dim3{blocks_for(int64_t{N} * V)},
         dim3{k::kBlock}, 0, chained.data(), static_cast<const float*>(got_probs.data()),
         targets.data(), 0.25f, int64_t{N}, V);
  CHECK(got_losses == forward_losses);
  CHECK(got_fused == chained);

  // Rows padded to ld > V (the GPU classifier's layout): the padding is neither read nor written.
  const int64_t ld = V + 5;
  Vec padded(size_t(N) * ld, std::numeric_limits<float>::quiet_NaN());
  for (int n = 0; n < N; ++n) {
    std::copy_n(logits.begin() + int64_t{n} * V, V, padded.begin() + n * ld);
  }
  launch(k::softmax_cross_entropy_kernel<float>, dim3{unsigned(N)}, dim3{k::kCrossEntropyBlock}, 0,
         got_losses.data(), padded.data(), static_cast<const float*>(padded.data()), targets.data(),
         0.25f, V, ld, false);
  Vec unpadded(logits.size());
  for (int n = 0; n < N; ++n) {
    std::copy_n(padded.begin() + n * ld, V, unpadded.begin() + int64_t{n} * V);
    for (int64_t i = V; i < ld; ++i) CHECK(std::isnan(padded[n * ld + i]));
  }
  check_parity("softmax_cross_entropy_fused losses padded", got_losses, fused_losses, 1e-5);
  check_parity("softmax_cross_entropy_fused dlogits padded", unpadded, fused, 1e-6);
}

TEST_CASE("emulated sum of squares", "[op_kernels]") {
  const int64_t N = 50'000;
  const Vec x = random_vec(N, 60);
  double want = 0;
  for (float v : x) want += double(v) * v;
  const int parts = 7;
  std::vector<double> part_sums(parts);
  double got = 0;
  launch(k::sum_of_squares_parts_kernel<float>, dim3{unsigned(parts)}, dim3{k::kSumBlock}, 0,
         part_sums.data(), x.data(), N);
  launch(k::sum_parts_kernel, dim3{1}, dim3{k::kSumBlock}, 0, &got,
         static_cast<const double*>(part_sums.data()), parts);
  CHECK(got == Approx(want).epsilon(1e-12));

  // A bf16 gradient is summed from its widened values, in the same order: the fp32 kernel's sum
  // over the widened copy, bit for bit.
  std::vector<__nv_bfloat16> x16(N);
  Vec widened(N);
  for (int64_t i = 0; i < N; ++i) {
    x16[i] = __float2bfloat16(x[i]);
    widened[i] = __bfloat162float(x16[i]);
  }
  double got16 = 0, want16 = 0;
  launch(k::sum_of_squares_parts_kernel<__nv_bfloat16>, dim3{unsigned(parts)}, dim3{k::kSumBlock},
         0, part_sums.data(), x16.data(), N);
  launch(k::sum_parts_kernel, dim3{1}, dim3{k::kSumBlock}, 0, &got16,
         static_cast<const double*>(part_sums.data()), parts);
  launch(k::sum_of_squares_parts_kernel<float>, dim3{unsigned(parts)}, dim3{k::kSumBlock}, 0,
         part_sums.data(), widened.data(), N);
  launch(k::sum_parts_kernel, dim3{1}, dim3{k::kSumBlock}, 0, &want16,
         static_cast<const double*>(part_sums.data()), parts);
  CHECK(got16 == want16);
}
