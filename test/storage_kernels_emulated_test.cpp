// The bf16 and f16 instances of op_kernels.cuh's storage-generic kernels, built against the CPU
// emulation of CUDA (emulated_cuda/), against their fp32 instance: loads widen exactly, the
// arithmetic is the fp32 instance's, and stores round once, so on inputs that are already bf16
// (f16) values each result must be exactly the fp32 instance's result rounded to bf16 (f16), and
// each fp32 output (statistics, losses, embedding gradients) exactly the fp32 instance's. The fp32
// instance itself is checked against the CPU kernels by op_kernels_emulated_test; what this adds
// is the load/store plumbing of every instance, on every CI run.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "emulated_layernorm.h"
#include "emulated_token_buckets.h"
#include "parity_helpers.h"
#include "tensor/cuda/op_kernels.cuh"

namespace {

using namespace ds_parity_test;
namespace k = ds::tensor::cuda::op_kernels;
using ds::tensor::cuda::detail::blocks_for;
using ds_emulated_cuda::launch;

template <typename S>
std::vector<S> narrow(const Vec& v) {
  std::vector<S> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) k::store(out.data(), int64_t(i), v[i]);
  return out;
}

template <typename S>
Vec widen(const std::vector<S>& v) {
  Vec out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = k::load(v.data(), int64_t(i));
  return out;
}

// Random values that S holds exactly.
template <typename S>
Vec representable(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  return widen(narrow<S>(random_vec(n, seed, lo, hi)));
}

uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// Every element of `got` is exactly `want` (fp32) rounded to S (S = float: equal bits).
template <typename S>
void check_rounded(const char* what, const std::vector<S>& got, const Vec& want) {
  REQUIRE(got.size() == want.size());
  const Vec expected = widen(narrow<S>(want));
  const Vec actual = widen(got);
  size_t mismatches = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (bits(actual[i]) != bits(expected[i]) && mismatches++ == 0) first = i;
  }
  INFO(what << ": " << mismatches << " of " << want.size() << " differ; first at " << first
            << ": got " << actual[first] << ", want " << expected[first]);
  CHECK(mismatches == 0);
}

void check_equal(const char* what, const Vec& got, const Vec& want) {
  check_rounded<float>(what, narrow<float>(got), want);
}

}  // namespace

TEMPLATE_TEST_CASE("emulated storage kernels: the embedding", "[storage_kernels]", __nv_bfloat16,
                   __half) {
  using S = TestType;
  const int B = 2, T = 9, C = 40, V = 23;  // few tokens, so most repeat
  const int64_t BT = int64_t{B} * T;
  const Tokens tokens = random_tokens(size_t(BT), V, 1);
  const Vec wte = representable<S>(size_t(V) * C, 2), wpe = representable<S>(size_t(T) * C, 3);
  Vec want(size_t(BT) * C);
  launch(k::encoder_forward_kernel<float>, dim3{blocks_for(int64_t(want.size()))}, dim3{k::kBlock},
         0, want.data(), tokens.data(), static_cast<const float*>(wte.data()),
         static_cast<const float*>(wpe.data()), BT, T, C);
  std::vector<S> got(want.size());
  const std::vector<S> wte_s = narrow<S>(wte), wpe_s = narrow<S>(wpe);
  launch(k::encoder_forward_kernel<S>, dim3{blocks_for(int64_t(got.size()))}, dim3{k::kBlock}, 0,
         got.data(), tokens.data(), wte_s.data(), wpe_s.data(), BT, T, C);
  check_rounded("encoder_forward", got, want);

  const Vec dout = representable<S>(want.size(), 4);
  const std::vector<S> dout_s = narrow<S>(dout);
  const EmulatedTokenBuckets buckets(tokens);
  const dim3 grid{unsigned(buckets.tokens.size()), blocks_for(C)};
  Vec want_dwte = random_vec(wte.size(), 5), got_dwte = want_dwte;
  launch(k::wte_backward_kernel<float>, grid, dim3{k::kBlock}, 0, want_dwte.data(),
         static_cast<const float*>(dout.data()), buckets.tokens.data(), buckets.offsets.data(),
         buckets.positions.data(), C);
  launch(k::wte_backward_kernel<S>, grid, dim3{k::kBlock}, 0, got_dwte.data(),
         static_cast<const S*>(dout_s.data()), buckets.tokens.data(), buckets.offsets.data(),
         buckets.positions.data(), C);
  check_equal("wte_backward (fp32 gradient)", got_dwte, want_dwte);

  Vec want_dwpe = random_vec(wpe.size(), 6), got_dwpe = want_dwpe;
  launch(k::wpe_backward_kernel<float>, dim3{blocks_for(int64_t{T} * C)}, dim3{k::kBlock}, 0,
         want_dwpe.data(), static_cast<const float*>(dout.data()), B, T, C);
  launch(k::wpe_backward_kernel<S>, dim3{blocks_for(int64_t{T} * C)}, dim3{k::kBlock}, 0,
         got_dwpe.data(), static_cast<const S*>(dout_s.data()), B, T, C);
  check_equal("wpe_backward (fp32 gradient)", got_dwpe, want_dwpe);
}

TEMPLATE_TEST_CASE("emulated storage kernels: layernorm", "[storage_kernels]", __nv_bfloat16,
                   __half) {
  using S = TestType;
  const int N = 11, C = 72;
  const EmulatedLayernorm how{GENERATE(false, true)};  // op_kernels.cuh's, or the row kernels
  INFO((how.rows ? "row kernels" : "column kernels"));
  const Vec inp = representable<S>(size_t(N) * C, 10, -2.0f, 3.0f);
  const Vec weight = representable<S>(C, 11), bias = representable<S>(C, 12);
  Vec want(inp.size()), want_mean(N), want_rstd(N);
  emulated_layernorm_forward(
      want.data(), want_mean.data(), want_rstd.data(), static_cast<const float*>(inp.data()),
      static_cast<const float*>(weight.data()), static_cast<const float*>(bias.data()), N, C, how);
  const std::vector<S> inp_s = narrow<S>(inp), weight_s = narrow<S>(weight);
  const std::vector<S> bias_s = narrow<S>(bias);
  std::vector<S> got(want.size());
  Vec got_mean(N), got_rstd(N);
  emulated_layernorm_forward(got.data(), got_mean.data(), got_rstd.data(), inp_s.data(),
                             weight_s.data(), bias_s.data(), N, C, how);
  check_rounded("layernorm_forward out", got, want);
  check_equal("layernorm_forward mean (fp32)", got_mean, want_mean);
  check_equal("layernorm_forward rstd (fp32)", got_rstd, want_rstd);

  // The backward accumulates into gradients stored in S: read, add in fp32, round once.
  const Vec dout = representable<S>(inp.size(), 13);
  Vec dinp = representable<S>(inp.size(), 14), dweight = representable<S>(C, 15);
  Vec dbias = representable<S>(C, 16);
  std::vector<S> got_dinp = narrow<S>(dinp), got_dweight = narrow<S>(dweight);
  std::vector<S> got_dbias = narrow<S>(dbias);
  const std::vector<S> dout_s = narrow<S>(dout);
  const float* mean = want_mean.data();
  const float* rstd = want_rstd.data();
  emulated_layernorm_backward(dinp.data(), static_cast<const float*>(dinp.data()), dweight.data(),
                              dbias.data(), static_cast<const float*>(dout.data()),
                              static_cast<const float*>(inp.data()),
                              static_cast<const float*>(weight.data()), mean, rstd, N, C, how);
  emulated_layernorm_backward(got_dinp.data(), static_cast<const S*>(got_dinp.data()),
                              got_dweight.data(), got_dbias.data(), dout_s.data(), inp_s.data(),
                              weight_s.data(), mean, rstd, N, C, how);
  check_rounded("layernorm_backward dinp", got_dinp, dinp);
  check_rounded("layernorm_backward dweight", got_dweight, dweight);
  check_rounded("layernorm_backward dbias", got_dbias, dbias);
}

// The bf16 sublayers' layernorm (tensor/cuda/bf16_mlp.h): fp32 input normalised into bf16, and
// the backward from a bf16 gradient into fp32 ones.
TEST_CASE("emulated storage kernels: layernorm between fp32 and bf16", "[storage_kernels]") {
  using bf16 = __nv_bfloat16;
  const int N = 11, C = 72;
  const EmulatedLayernorm how{GENERATE(false, true)};  // op_kernels.cuh's, or the row kernels
  INFO((how.rows ? "row kernels" : "column kernels"));
  const Vec inp = random_vec(size_t(N) * C, 20, -2.0f, 3.0f);
  const Vec weight = random_vec(C, 21), bias = random_vec(C, 22);
  Vec want(inp.size()), mean(N), rstd(N);
  emulated_layernorm_forward(want.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                             bias.data(), N, C, how);
  std::vector<bf16> got(want.size());
  Vec got_mean(N), got_rstd(N);
  emulated_layernorm_forward(got.data(), got_mean.data(), got_rstd.data(), inp.data(),
                             weight.data(), bias.data(), N, C, how);
  check_rounded("layernorm_forward into bf16", got, want);
  check_equal("layernorm_forward into bf16: mean", got_mean, mean);
  check_equal("layernorm_forward into bf16: rstd", got_rstd, rstd);

  const Vec dout = representable<bf16>(inp.size(), 23), dresidual = random_vec(inp.size(), 24);
  const std::vector<bf16> dout_s = narrow<bf16>(dout);
  Vec dinp(inp.size()), dweight = random_vec(C, 25), dbias = random_vec(C, 26);
  Vec got_dinp(inp.size()), got_dweight = dweight, got_dbias = dbias;
  emulated_layernorm_backward(dinp.data(), dresidual.data(), dweight.data(), dbias.data(),
                              dout.data(), inp.data(), weight.data(), mean.data(), rstd.data(), N,
                              C, how);
  emulated_layernorm_backward(got_dinp.data(), dresidual.data(), got_dweight.data(),
                              got_dbias.data(), dout_s.data(), inp.data(), weight.data(),
                              mean.data(), rstd.data(), N, C, how);
  check_equal("layernorm_backward from bf16: dinp", got_dinp, dinp);
  check_equal("layernorm_backward from bf16: dweight", got_dweight, dweight);
  check_equal("layernorm_backward from bf16: dbias", got_dbias, dbias);
}

// The MLP's norm backward handing dinp on to the attention sublayer's backward
// (mixed::GradientHandOff): the same dinp and parameter gradients as without, dinp's bf16 copy
// rounded once from it, and its column sums. C = 72 (a lane's single octet, most lanes idle) and
// 776 (four octets a lane, the last partly idle); N = 300 rows over the blocks, 7 of them.
TEST_CASE("emulated storage kernels: layernorm backward handing dinp on", "[storage_kernels]") {
  using bf16 = __nv_bfloat16;
  const int N = 300, C = GENERATE(72, 776);
  INFO("C=" << C);
  const EmulatedLayernorm how{true, 4, 7};
  const Vec inp = random_vec(size_t(N) * C, 30, -2.0f, 3.0f);
  const Vec weight = random_vec(C, 31), bias = random_vec(C, 32);
  Vec mean(N), rstd(N), normed(inp.size());
  emulated_layernorm_forward(normed.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                             bias.data(), N, C, how);
  const std::vector<bf16> dout = narrow<bf16>(representable<bf16>(inp.size(), 33));
  const Vec dresidual = random_vec(inp.size(), 34);
  Vec dinp(inp.size()), dweight = random_vec(C, 35), dbias = random_vec(C, 36);
  Vec got_dinp(inp.size()), got_dweight = dweight, got_dbias = dbias;
  emulated_layernorm_backward(dinp.data(), dresidual.data(), dweight.data(), dbias.data(),
                              dout.data(), inp.data(), weight.data(), mean.data(), rstd.data(), N,
                              C, how);
  std::vector<bf16> copy(inp.size());
  Vec sums = random_vec(C, 37);  // written
  emulated_layernorm_backward(got_dinp.data(), dresidual.data(), got_dweight.data(),
                              got_dbias.data(), dout.data(), inp.data(), weight.data(), mean.data(),
                              rstd.data(), N, C, how, copy.data(), sums.data());
  check_equal("handing on: dinp", got_dinp, dinp);
  check_equal("handing on: dweight", got_dweight, dweight);
  check_equal("handing on: dbias", got_dbias, dbias);
  check_rounded("handing on: dinp's bf16 copy", copy, dinp);
  std::vector<double> want(C, 0.0);
  for (size_t i = 0; i < dinp.size(); ++i) want[i % C] += dinp[i];
  check_parity("handing on: dinp's column sums", sums, Vec(want.begin(), want.end()), 1e-5);
}

TEMPLATE_TEST_CASE("emulated storage kernels: element-wise", "[storage_kernels]", __nv_bfloat16,
                   __half) {
  using S = TestType;
  const int64_t N = 700;
  const dim3 grid{blocks_for(N)}, block{k::kBlock};
  const Vec a = representable<S>(N, 20, -5.0f, 5.0f), b = representable<S>(N, 21);
  const std::vector<S> a_s = narrow<S>(a), b_s = narrow<S>(b);
  const float* af = a.data();
  const float* bf = b.data();

  Vec want(N);
  std::vector<S> got(N);
  launch(k::gelu_forward_kernel<float>, grid, block, 0, want.data(), af, N);
  launch(k::gelu_forward_kernel<S>, grid, block, 0, got.data(), a_s.data(), N);
  check_rounded("gelu_forward", got, want);

  Vec acc = representable<S>(N, 22);
  std::vector<S> got_acc = narrow<S>(acc);
  launch(k::gelu_backward_kernel<float>, grid, block, 0, acc.data(), af, bf, N);
  launch(k::gelu_backward_kernel<S>, grid, block, 0, got_acc.data(), a_s.data(), b_s.data(), N);
  check_rounded("gelu_backward (accumulated)", got_acc, acc);

  Vec d = b;
  std::vector<S> got_d = b_s;
  launch(k::gelu_backward_inplace_kernel<float>, grid, block, 0, d.data(), af, N);
  launch(k::gelu_backward_inplace_kernel<S>, grid, block, 0, got_d.data(), a_s.data(), N);
  check_rounded("gelu_backward_inplace", got_d, d);

  launch(k::residual_forward_kernel<float>, grid, block, 0, want.data(), af, bf, N);
  launch(k::residual_forward_kernel<S>, grid, block, 0, got.data(), a_s.data(), b_s.data(), N);
  check_rounded("residual_forward", got, want);

  acc = a;
  got_acc = a_s;
  launch(k::add_inplace_kernel<float>, grid, block, 0, acc.data(), bf, N);
  launch(k::add_inplace_kernel<S>, grid, block, 0, got_acc.data(), b_s.data(), N);
  check_rounded("add_inplace", got_acc, acc);

  const int rows = 7, C = 100;  // N = 700 as rows x C
  launch(k::broadcast_rows_kernel<float>, grid, block, 0, want.data(), bf, int64_t{rows}, C);
  launch(k::broadcast_rows_kernel<S>, grid, block, 0, got.data(), b_s.data(), int64_t{rows}, C);
  check_rounded("broadcast_rows", got, want);
}

TEMPLATE_TEST_CASE("emulated storage kernels: fused softmax cross-entropy", "[storage_kernels]",
                   __nv_bfloat16, __half) {
  using S = TestType;
  const int N = 5;
  // Rows longer than the 512-thread block; 20000 gives each thread several batches of 16-byte
  // chunks (visit_row's), the last one partial, and a partial last chunk.
  const int V = GENERATE(1100, 20004);
  INFO("V=" << V);
  const Vec logits = representable<S>(size_t(N) * V, 30, -6.0f, 6.0f);
  Tokens targets = random_tokens(N, V, 31);
  targets[3] = k::kIgnoreTarget;
  const float dloss = 0.125f;
  const dim3 grid{unsigned(N)}, block{k::kCrossEntropyBlock};

  // The training step's use: dlogits written over the logits.
  Vec want = logits, want_losses(N);
  launch(k::softmax_cross_entropy_kernel<float>, grid, block, 0, want_losses.data(), want.data(),
         static_cast<const float*>(want.data()), targets.data(), dloss, V, int64_t{V}, false);
  std::vector<S> got = narrow<S>(logits);
  Vec got_losses(N);
  launch(k::softmax_cross_entropy_kernel<S>, grid, block, 0, got_losses.data(), got.data(),
         static_cast<const S*>(got.data()), targets.data(), dloss, V, int64_t{V}, false);
  check_equal("softmax_cross_entropy losses (fp32)", got_losses, want_losses);
  check_rounded("softmax_cross_entropy dlogits in place", got, want);

  // Evaluation: losses only.
  const std::vector<S> logits_s = narrow<S>(logits);
  Vec eval_losses(N);
  launch(k::softmax_cross_entropy_kernel<S>, grid, block, 0, eval_losses.data(),
         static_cast<S*>(nullptr), logits_s.data(), targets.data(), dloss, V, int64_t{V}, false);
  check_equal("softmax_cross_entropy losses without dlogits", eval_losses, want_losses);

  // Staged in shared memory, as the classifier's rows are (16-byte aligned: padded to a whole
  // number of chunks): the same bits.
  const int64_t ld = (V + 7) / 8 * 8;
  std::vector<S> plain(size_t(N) * ld);
  for (int n = 0; n < N; ++n) {
    std::copy_n(logits_s.begin() + int64_t{n} * V, V, plain.begin() + n * ld);
  }
  std::vector<S> staged = plain;
  Vec plain_losses(N), staged_losses(N);
  launch(k::softmax_cross_entropy_kernel<S>, grid, block, 0, plain_losses.data(), plain.data(),
         static_cast<const S*>(plain.data()), targets.data(), dloss, V, ld, false);
  launch(k::softmax_cross_entropy_kernel<S>, grid, block, k::cross_entropy_staged_bytes<S>(V),
         staged_losses.data(), staged.data(), static_cast<const S*>(staged.data()), targets.data(),
         dloss, V, ld, true);
  check_equal("softmax_cross_entropy staged: losses", staged_losses, plain_losses);
  check_rounded("softmax_cross_entropy staged: dlogits", staged, widen(plain));
}

// The bias gradient's two passes (bf16_kernels.cu's bias_gradient and
// rounded_with_bias_gradient): 300 rows end inside a third 128-row chunk, 264 columns inside a
// second block of 256; the sums are added to dbias.
TEMPLATE_TEST_CASE("emulated storage kernels: bias gradient in chunks", "[storage_kernels]", float,
                   __nv_bfloat16) {
  using S = TestType;
  const int N = 300, C = 264;
  const Vec dout = representable<S>(size_t(N) * C, 60);
  const std::vector<S> stored = narrow<S>(dout);
  const Vec start = random_vec(size_t(C), 61);
  Vec want = start;
  for (int c = 0; c < C; ++c) {
    double sum = 0;
    for (int n = 0; n < N; ++n) sum += dout[size_t(n) * C + c];
    want[c] += static_cast<float>(sum);
  }
  const int chunks = k::bias_chunks(N);
  // An fp32 dout is also rounded to bf16 on the way (as a bf16 GEMM's copy), a bf16 one not.
  constexpr bool kRound = std::is_same_v<S, float>;
  std::vector<__nv_bfloat16> rounded;
  if (kRound) rounded = narrow<__nv_bfloat16>(random_vec(dout.size(), 63));
  Vec partials = random_vec(size_t(chunks) * C, 62), got = start;  // every partial is written
  launch(k::bias_partials_kernel<S>,
         dim3{blocks_for(C, 8 * k::kBiasGroups), static_cast<unsigned>(chunks)},
         dim3{k::kBiasGroups, k::kBiasLanes}, 0, partials.data(), stored.data(), N, C,
         kRound ? rounded.data() : nullptr);
  launch(k::column_sum_kernel<float, k::RowsTerm<float>>, dim3{blocks_for(C, k::kColumnWidth)},
         dim3{k::kColumnWidth, k::kColumnRows}, 0, got.data(), chunks, C,
         k::RowsTerm<float>{partials.data(), C});
  check_parity("bias gradient", got, want, 1e-6);
  if (kRound) check_rounded("bf16 copy", rounded, dout);
}
