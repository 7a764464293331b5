// The CUDA ops of tensor/cuda/kernels.h against the CPU kernels of tensor/cpu/kernels.h, on
// random inputs at small, odd sizes (B=2, T=7, C=48, NH=3, V=97 and odder). Each check states
// its threshold on max|gpu-cpu| / max|cpu|:
//   1e-6  sums the GPU does in the CPU's order (embeddings, residuals): expected bitwise equal;
//   1e-5  element-wise ops and row reductions (norms, softmax, cross-entropy): float rounding,
//         expf/tanhf against the CPU's polynomial exp;
//   1e-4  GEMM-based ops (matmul, attention): fp32 sums of up to a few hundred terms in
//         cuBLAS's order rather than OpenBLAS's; 2e-3 and 1e-2 for matmuls whose inputs are
//         rounded to TF32 and bf16 (MatmulPrecision).
// Backwards start from the same random gradients on both sides, which checks that the CUDA
// ops accumulate (+=) as the CPU ones do. Without a GPU each case WARNs and passes.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "attention_reference.h"
#include "cuda_test_helpers.h"
#include "tensor/cpu/kernels.h"
#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/cast_kernels.h"
#if defined(DS_WITH_CUDNN)
#include "tensor/cuda/cudnn_attention.h"
#include "tensor/cuda/cudnn_library.h"
#endif
#include "tensor/cuda/flash_attention.h"
#include "tensor/cuda/kernels.h"
#include "tensor/cuda/tensor_core_attention.h"
#include "util/error.h"

namespace cpu = ds::tensor::cpu;
using namespace ds_cuda_test;
using cpu::WeightLayout;
using ds::tensor::MatmulPrecision;

TEST_CASE("cuda encoder matches the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const int B = 2, T = 7, C = 48, V = 97;
  Tokens tokens = random_tokens(B * T, V, 1);
  tokens[3] = tokens[0];  // a repeated token: two rows add into one row of dwte
  tokens[T + 3] = tokens[0];
  const Vec wte = random_vec(size_t(V) * C, 2);
  const Vec wpe = random_vec(size_t(T) * C, 3);
  Vec out(size_t(B) * T * C);
  cpu::encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);

  auto d_tokens = to_device(tokens, gpu);
  auto d_wte = to_device(wte, gpu);
  auto d_wpe = to_device(wpe, gpu);
  auto d_out = cuda::DeviceBuffer::floats(int64_t(out.size()));
  cuda::encoder_forward(d_out.as<float>(), d_tokens.as<int32_t>(), d_wte.as<float>(),
                        d_wpe.as<float>(), B, T, C, gpu.s());
  check_parity("encoder_forward", to_host(d_out, gpu), out, 1e-6);

  const Vec dout = random_vec(out.size(), 4);
  Vec dwte = random_vec(wte.size(), 5);
  Vec dwpe = random_vec(wpe.size(), 6);
  auto d_dout = to_device(dout, gpu);
  auto d_dwte = to_device(dwte, gpu);
  auto d_dwpe = to_device(dwpe, gpu);
  cpu::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);
  // The buckets from the ids on the device, then (for a second, identical sum) from the host's.
  cuda::TokenBuckets buckets;
  buckets.build(d_tokens.as<int32_t>(), int64_t{B} * T, gpu.s());
  cuda::encoder_backward(d_dwte.as<float>(), d_dwpe.as<float>(), d_dout.as<float>(), B, T, C,
                         buckets, gpu.s());
  check_parity("encoder_backward dwte", to_host(d_dwte, gpu), dwte, 1e-6);
  check_parity("encoder_backward dwpe", to_host(d_dwpe, gpu), dwpe, 1e-6);
  const Vec once = to_host(d_dwte, gpu);
  cpu::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);
  buckets.build_from_host(tokens.data(), int64_t{B} * T, gpu.s());
  cuda::encoder_backward(d_dwte.as<float>(), d_dwpe.as<float>(), d_dout.as<float>(), B, T, C,
                         buckets, gpu.s());
  check_parity("encoder_backward dwte, buckets from the host", to_host(d_dwte, gpu), dwte, 1e-6);
  CHECK(to_host(d_dwte, gpu) != once);
}

TEST_CASE("cuda layernorm matches the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  // 2100 x 1600: GPT-2 XL's width, whose backward's column sums take more than 48 KiB of shared
  // memory a block (opted into), over more rows than its 512 blocks have warps.
  const auto [N, C] =
      GENERATE(std::pair{14, 48}, std::pair{5, 131}, std::pair{3, 1}, std::pair{2100, 1600});
  INFO("N=" << N << " C=" << C);
  const Vec inp = random_vec(size_t(N) * C, 10, -2.0f, 3.0f);
  const Vec weight = random_vec(C, 11);
  const Vec bias = random_vec(C, 12);
  Vec out(inp.size()), mean(N), rstd(N);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), N, C, 1e-5f);
  auto d_inp = to_device(inp, gpu);
  auto d_weight = to_device(weight, gpu);
  auto d_bias = to_device(bias, gpu);
  auto d_out = cuda::DeviceBuffer::floats(int64_t(out.size()));
  auto d_mean = cuda::DeviceBuffer::floats(N);
  auto d_rstd = cuda::DeviceBuffer::floats(N);
  cuda::layernorm_forward(d_out.as<float>(), d_mean.as<float>(), d_rstd.as<float>(),
                          d_inp.as<float>(), d_weight.as<float>(), d_bias.as<float>(), N, C, 1e-5f,
                          gpu.s());
  check_parity("layernorm_forward out", to_host(d_out, gpu), out, 1e-5);
  check_parity("layernorm_forward mean", to_host(d_mean, gpu), mean, 1e-5);
  check_parity("layernorm_forward rstd", to_host(d_rstd, gpu), rstd, 1e-5);

  const Vec dout = random_vec(out.size(), 13);
  Vec dinp = random_vec(inp.size(), 14);
  Vec dweight = random_vec(C, 15);
  Vec dbias = random_vec(C, 16);
  auto d_dout = to_device(dout, gpu);
  auto d_dinp = to_device(dinp, gpu);
  auto d_dweight = to_device(dweight, gpu);
  auto d_dbias = to_device(dbias, gpu);
  auto d_partials = cuda::DeviceBuffer::floats(cuda::mixed::layernorm_partial_floats(C));
  cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  cuda::layernorm_backward(d_dinp.as<float>(), d_dinp.as<float>(), d_dweight.as<float>(),
                           d_dbias.as<float>(), d_dout.as<float>(), d_inp.as<float>(),
                           d_weight.as<float>(), d_mean.as<float>(), d_rstd.as<float>(), N, C,
                           d_partials.as<float>(), gpu.s());
  check_parity("layernorm_backward dinp", to_host(d_dinp, gpu), dinp, 1e-5);
  check_parity("layernorm_backward dweight", to_host(d_dweight, gpu), dweight, 1e-5);
  check_parity("layernorm_backward dbias", to_host(d_dbias, gpu), dbias, 1e-5);

  // Onto a residual's gradient (Ops::layernorm_backward_onto): dinp written, its old values unread.
  const Vec dresidual = random_vec(inp.size(), 17);
  Vec onto = dresidual;
  cpu::layernorm_backward(onto.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  auto d_dresidual = to_device(dresidual, gpu);
  auto d_onto = to_device(random_vec(inp.size(), 18), gpu);
  cuda::layernorm_backward(d_onto.as<float>(), d_dresidual.as<float>(), d_dweight.as<float>(),
                           d_dbias.as<float>(), d_dout.as<float>(), d_inp.as<float>(),
                           d_weight.as<float>(), d_mean.as<float>(), d_rstd.as<float>(), N, C,
                           d_partials.as<float>(), gpu.s());
  check_parity("layernorm_backward onto a residual dinp", to_host(d_onto, gpu), onto, 1e-5);
  check_parity("layernorm_backward onto a residual dweight", to_host(d_dweight, gpu), dweight,
               1e-5);
}

TEST_CASE("cuda matmul matches the CPU in both weight layouts at every precision", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  // TF32 and bf16 round each input to an 11- or 8-bit significand (2^-11, 2^-8 relative), and
  // sum the rounded products in fp32.
  const auto [precision, tol] =
      GENERATE(std::pair{MatmulPrecision::kFp32, 1e-4}, std::pair{MatmulPrecision::kTf32, 2e-3},
               std::pair{MatmulPrecision::kBf16, 1e-2});
  cuda::Blas blas(precision);
  const auto layout = GENERATE(WeightLayout::kInOut, WeightLayout::kOutIn);
  const bool with_bias = GENERATE(true, false);
  const auto [N, IC, OC] = GENERATE(std::tuple{14, 48, 97}, std::tuple{7, 33, 65});
  INFO("precision=" << static_cast<int>(precision)
                    << " layout=" << (layout == WeightLayout::kInOut ? "InOut" : "OutIn")
                    << " bias=" << with_bias << " N=" << N << " IC=" << IC << " OC=" << OC);
  const Vec inp = random_vec(size_t(N) * IC, 20);
  const Vec weight = random_vec(size_t(IC) * OC, 21);
  const Vec bias = random_vec(OC, 22);
  Vec out(size_t(N) * OC);
  cpu::matmul_forward(out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr, N,
                      IC, OC, layout);
  auto d_inp = to_device(inp, gpu);
  auto d_weight = to_device(weight, gpu);
  auto d_bias = to_device(bias, gpu);
  auto d_out = cuda::DeviceBuffer::floats(int64_t(out.size()));
  cuda::matmul_forward(blas, d_out.as<float>(), d_inp.as<float>(), d_weight.as<float>(),
                       with_bias ? d_bias.as<float>() : nullptr, N, IC, OC, layout, gpu.s());
  check_parity("matmul_forward", to_host(d_out, gpu), out, tol);

  const Vec dout = random_vec(out.size(), 23);
  Vec dinp = random_vec(inp.size(), 24);
  Vec dweight = random_vec(weight.size(), 25);
  Vec dbias = random_vec(OC, 26);
  auto d_dout = to_device(dout, gpu);
  auto d_dinp = to_device(dinp, gpu);
  auto d_dweight = to_device(dweight, gpu);
  auto d_dbias = to_device(dbias, gpu);
  // Without a bias, also without dinp (the first layer's case).
  cpu::matmul_backward(with_bias ? dinp.data() : nullptr, dweight.data(),
                       with_bias ? dbias.data() : nullptr, dout.data(), inp.data(), weight.data(),
                       N, IC, OC, layout);
  cuda::matmul_backward(blas, with_bias ? d_dinp.as<float>() : nullptr, d_dweight.as<float>(),
                        with_bias ? d_dbias.as<float>() : nullptr, d_dout.as<float>(),
                        d_inp.as<float>(), d_weight.as<float>(), N, IC, OC, layout, gpu.s());
  check_parity("matmul_backward dinp", to_host(d_dinp, gpu), dinp, tol);
  check_parity("matmul_backward dweight", to_host(d_dweight, gpu), dweight, tol);
  check_parity("matmul_backward dbias", to_host(d_dbias, gpu), dbias, 1e-5);
}

TEST_CASE("cuda causal attention matches the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  // T=70 crosses the CPU's 64-row attention block.
  const auto [B, T, C, NH] = GENERATE(std::tuple{2, 7, 48, 3}, std::tuple{1, 70, 64, 4});
  INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
  const Vec qkv = random_vec(size_t(B) * T * 3 * C, 30, -2.0f, 2.0f);
  Vec out(size_t(B) * T * C), att(size_t(B) * NH * T * T);
  cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  auto d_qkv = to_device(qkv, gpu);
  auto d_out = cuda::DeviceBuffer::floats(int64_t(out.size()));
  auto d_att = to_device(random_vec(att.size(), 31), gpu);  // garbage the op must overwrite
  cuda::attention_forward(gpu.blas, d_out.as<float>(), d_att.as<float>(), d_qkv.as<float>(), B, T,
                          C, NH, gpu.s());
  check_parity("attention_forward out", to_host(d_out, gpu), out, 1e-4);
  check_parity("attention_forward att", to_host(d_att, gpu), att, 1e-5);

  const Vec dout = random_vec(out.size(), 32);
  Vec dqkv = random_vec(qkv.size(), 33);
  Vec datt(att.size());
  auto d_dout = to_device(dout, gpu);
  auto d_dqkv = to_device(dqkv, gpu);
  auto d_datt = cuda::DeviceBuffer::floats(int64_t(att.size()));
  cpu::attention_backward(dqkv.data(), datt.data(), dout.data(), qkv.data(), att.data(), B, T, C,
                          NH);
  cuda::attention_backward(gpu.blas, d_dqkv.as<float>(), d_datt.as<float>(), d_dout.as<float>(),
                           d_qkv.as<float>(), d_att.as<float>(), B, T, C, NH, gpu.s());
  check_parity("attention_backward dqkv", to_host(d_dqkv, gpu), dqkv, 1e-4);
}

namespace {

// The flash-style kernels' two entry points (flash_attention.h, tensor_core_attention.h).
using FlashForward =
    std::function<void(float*, float*, const float*, int, int, int, int, cudaStream_t)>;
using FlashBackward = std::function<void(float*, float*, const float*, const float*, const float*,
                                         const float*, int, int, int, int, cudaStream_t)>;

// Thresholds by normalised error for the forward's output and log-sum-exp, and the backward's
// dqkv.
struct FlashThresholds {
  double out, lse, dqkv;
};

// A flash-style forward and backward on the GPU against the CPU kernels (AttentionReference),
// the check names starting with `name`.
void check_flash_style(const std::string& name, FlashForward forward, FlashBackward backward, int B,
                       int T, int C, int NH, FlashThresholds threshold) {
  INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
  Gpu gpu;
  const AttentionReference want(B, T, C, NH);
  auto d_qkv = to_device(want.qkv, gpu);
  auto d_out = to_device(random_vec(want.out.size(), 35), gpu);  // garbage the op must overwrite
  auto d_lse = cuda::DeviceBuffer::floats(int64_t{B} * NH * T);
  forward(d_out.as<float>(), d_lse.as<float>(), d_qkv.as<float>(), B, T, C, NH, gpu.s());
  check_parity(name + "_forward out", to_host(d_out, gpu), want.out, threshold.out);
  check_parity(name + "_forward lse", to_host(d_lse, gpu), want.lse, threshold.lse);

  auto d_dout = to_device(want.dout, gpu);
  auto d_dqkv = to_device(want.dqkv_start, gpu);
  auto d_row_dot = cuda::DeviceBuffer::floats(int64_t{B} * NH * T);
  backward(d_dqkv.as<float>(), d_row_dot.as<float>(), d_dout.as<float>(), d_qkv.as<float>(),
           d_out.as<float>(), d_lse.as<float>(), B, T, C, NH, gpu.s());
  check_parity(name + "_backward dqkv", to_host(d_dqkv, gpu), want.dqkv, threshold.dqkv);
}

}  // namespace

TEST_CASE("cuda flash-style attention matches the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  // Head sizes 16, 64 and 128 (the most); T = 65, 70, 100 and 300 cross the 32-row tiles and
  // the 8-row blocks unevenly.
  const auto [B, T, C, NH] =
      GENERATE(std::tuple{2, 7, 48, 3}, std::tuple{1, 70, 64, 4}, std::tuple{2, 65, 192, 3},
               std::tuple{1, 100, 256, 2}, std::tuple{1, 300, 256, 2});
  check_flash_style("flash_attention", cuda::flash_attention_forward,
                    cuda::flash_attention_backward, B, T, C, NH, {1e-4, 1e-4, 1e-4});
}

// bf16 rounding of Q, K, V, dout, the probabilities and their gradients: the thresholds the
// emulated test (tensor_core_attention_emulated_test) states for the same kernels.
TEST_CASE("cuda tensor-core flash attention matches the CPU within bf16 rounding", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  // Head sizes 16, 48, 64 and 128; T = 7, 65, 130 and 300 end inside a 64-row tile.
  const auto [B, T, C, NH] =
      GENERATE(std::tuple{2, 7, 32, 2}, std::tuple{1, 130, 96, 2}, std::tuple{2, 65, 192, 3},
               std::tuple{1, 300, 768, 12}, std::tuple{1, 100, 256, 2});
  REQUIRE(cuda::tensor_core_attention_supports(C, NH));
  cuda::TensorCoreAttention attention;
  const auto forward = [&](float* out, float* lse, const float* qkv, int b, int t, int c, int nh,
                           cudaStream_t stream) {
    attention.forward(out, lse, qkv, b, t, c, nh, stream);
  };
  const auto backward = [&](float* dqkv, float* row_dot, const float* dout, const float* qkv,
                            const float* out, const float* lse, int b, int t, int c, int nh,
                            cudaStream_t stream) {
    attention.backward(dqkv, row_dot, dout, qkv, out, lse, b, t, c, nh, stream);
  };
  check_flash_style("tensor_core_attention", forward, backward, B, T, C, NH,
                    {kTensorCoreOutError, kTensorCoreLseError, kTensorCoreDqkvError});
}

namespace {

// v rounded to bf16 in device memory, as the bf16 attention block's operands are.
cuda::DeviceBuffer bf16_on_device(const Vec& v, Gpu& gpu) {
  auto f32 = to_device(v, gpu);
  cuda::DeviceBuffer copy(bytes_of(v.size(), ds::tensor::DType::kBF16));
  cuda::from_f32(copy.data(), ds::tensor::DType::kBF16, f32.as<float>(), int64_t(v.size()),
                 gpu.s());
  return copy;
}

}  // namespace

// The forward, dQ and dK/dV come in two variants each (64- and 128-row blocks; fragments
// reloaded or held), which must give the same numbers bit for bit (the faster is chosen at run
// time): through both entry points, bf16 as the bf16 attention block runs them (with the qkv bias
// gradient, which must be the column sums of the bf16 dqkv written), and fp32 (dqkv accumulated).
TEST_CASE("cuda tensor-core attention's variants agree bit for bit", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  // Head sizes 16 and 64 (GPT-2's, the largest with variants); T = 200 leaves the first warps
  // of the last 128-row block a key tile to skip.
  const auto [B, T, C, NH] = GENERATE(std::tuple{2, 200, 32, 2}, std::tuple{1, 300, 768, 12});
  INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
  const AttentionReference inputs(B, T, C, NH);
  const auto bf16_copy = [&](const Vec& v) { return bf16_on_device(v, gpu); };
  using Bf16 = cuda::TensorCoreAttention::Bf16;
  const auto qkv = bf16_copy(inputs.qkv), dout = bf16_copy(inputs.dout);
  const auto qkv32 = to_device(inputs.qkv, gpu), dout32 = to_device(inputs.dout, gpu);
  const size_t rows = size_t(B) * T, stats = size_t(B) * NH * T;
  struct Results {
    std::vector<uint16_t> out, dqkv;
    Vec dbias, lse, out32, lse32, dqkv32;
  };
  const Vec dbias_start = random_vec(size_t(3) * C, 39);  // added to
  const auto run = [&](int variant) {
    cuda::TensorCoreAttention attention;
    attention.set_variant(variant);
    auto out = bf16_copy(random_vec(rows * C, 36));  // garbage the kernels must overwrite
    auto dqkv = bf16_copy(random_vec(rows * 3 * C, 37));
    auto lse = cuda::DeviceBuffer::floats(int64_t(stats));
    auto row_dot = cuda::DeviceBuffer::floats(int64_t(stats));
    auto dbias = to_device(dbias_start, gpu);
    attention.forward(out.as<Bf16>(), lse.as<float>(), qkv.as<Bf16>(), B, T, C, NH, gpu.s());
    attention.backward(dqkv.as<Bf16>(), dbias.as<float>(), row_dot.as<float>(), dout.as<Bf16>(),
                       qkv.as<Bf16>(), out.as<Bf16>(), lse.as<float>(), B, T, C, NH, gpu.s());
    auto out32 = to_device(random_vec(rows * C, 38), gpu);
    auto dqkv32 = to_device(inputs.dqkv_start, gpu);  // added to
    auto lse32 = cuda::DeviceBuffer::floats(int64_t(stats));
    attention.forward(out32.as<float>(), lse32.as<float>(), qkv32.as<float>(), B, T, C, NH,
                      gpu.s());
    attention.backward(dqkv32.as<float>(), row_dot.as<float>(), dout32.as<float>(),
                       qkv32.as<float>(), out32.as<float>(), lse32.as<float>(), B, T, C, NH,
                       gpu.s());
    return Results{to_host<uint16_t>(out, rows * C, gpu),
                   to_host<uint16_t>(dqkv, rows * 3 * C, gpu),
                   to_host(dbias, gpu),
                   to_host(lse, gpu),
                   to_host(out32, gpu),
                   to_host(lse32, gpu),
                   to_host(dqkv32, gpu)};
  };
  const Results first = run(0), second = run(1);
  CHECK(second.out == first.out);
  CHECK(second.lse == first.lse);
  CHECK(second.dqkv == first.dqkv);
  CHECK(second.dbias == first.dbias);
  std::vector<double> sums(dbias_start.begin(), dbias_start.end());
  for (size_t i = 0; i < first.dqkv.size(); ++i) {
    const uint32_t bits = uint32_t{first.dqkv[i]} << 16;
    float value;
    std::memcpy(&value, &bits, sizeof value);
    sums[i % sums.size()] += value;
  }
  check_parity("tensor-core attention's qkv bias sums", first.dbias, Vec(sums.begin(), sums.end()),
               1e-5);
  CHECK(second.out32 == first.out32);
  CHECK(second.lse32 == first.lse32);
  CHECK(second.dqkv32 == first.dqkv32);
}

#if defined(DS_WITH_CUDNN)
// Which cuDNN the attention takes, and DS_CUDNN_ATTENTION=0 (no GPU needed, so it runs in CI).
TEST_CASE(
    "cuDNN's attention wants cuDNN 9 other than 9.10.0 and 9.10.1 and not DS_CUDNN_ATTENTION=0",
    "[cuda]") {
  std::string why;
  CHECK(cuda::cudnn_attention_version_ok(91900, &why));
  CHECK(cuda::cudnn_attention_version_ok(91002, &why));
  CHECK_FALSE(cuda::cudnn_attention_version_ok(91001, &why));
  CHECK(why == "cuDNN 9.10.1 has a known bug in bf16 attention (fixed in 9.10.2)");
  CHECK_FALSE(cuda::cudnn_attention_version_ok(91000, &why));
  CHECK_FALSE(cuda::cudnn_attention_version_ok(8907, &why));
  CHECK(why == "cuDNN 8.9.7 is older than 9.0");

  const char* before = std::getenv("DS_CUDNN_ATTENTION");
  const std::string saved = before != nullptr ? before : "";
  setenv("DS_CUDNN_ATTENTION", "0", 1);
  CHECK_FALSE(cuda::CudnnAttention::wanted(&why));
  CHECK(why == "DS_CUDNN_ATTENTION=0");
  if (before != nullptr) {
    setenv("DS_CUDNN_ATTENTION", saved.c_str(), 1);
  } else {
    unsetenv("DS_CUDNN_ATTENTION");
  }
}

// cuDNN's fused attention (cudnn_attention.h) through the bf16 entry points that the bf16
// attention block calls, which take it while choosing: against the CPU kernels within the
// tensor-core kernels' bf16 thresholds, with the qkv bias gradient the column sums of the dqkv
// written, and the same bits from a second backward. Where no usable cuDNN loads it WARNs and
// passes; where one loads, cuDNN must plan both directions at every shape here.
TEST_CASE("cuda cuDNN fused attention matches the CPU within bf16 rounding", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  std::string why;
  if (!cuda::CudnnAttention::wanted(&why)) {
    WARN("cuDNN's attention not tested: " << why);
    return;
  }
  Gpu gpu;
  // Head size 64 (GPT-2's) with T ending inside a 64-row tile, and GPT-2's own shape; head size
  // 32.
  const auto [B, T, C, NH] =
      GENERATE(std::tuple{2, 65, 128, 2}, std::tuple{1, 1024, 768, 12}, std::tuple{1, 300, 128, 4});
  INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH << ", " << why);
  const AttentionReference want(B, T, C, NH);
  const auto bf16_copy = [&](const Vec& v) { return bf16_on_device(v, gpu); };
  const auto widened = [](const std::vector<uint16_t>& bits) {
    Vec values(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) {
      const uint32_t word = uint32_t{bits[i]} << 16;
      std::memcpy(&values[i], &word, sizeof(float));
    }
    return values;
  };
  {
    cuda::CudnnAttention cudnn;
    const bool forward = cudnn.has_forward(B, T, C, NH);
    const bool backward = cudnn.has_backward(B, T, C, NH);
    INFO(cudnn.refusal());
    CHECK(forward);
    // Refused only where cudnn_attention.cpp says why: T not a multiple of 128 up to 9.15.0.
    CHECK((backward || cudnn.refusal().find("9.15.0 and earlier") != std::string::npos));
  }
  using Bf16 = cuda::TensorCoreAttention::Bf16;
  cuda::TensorCoreAttention attention;  // runs each direction cuDNN planned
  REQUIRE(attention.uses_cudnn(B, T, C, NH));
  const size_t rows = size_t(B) * T, stats = size_t(B) * NH * T;
  const auto qkv = bf16_copy(want.qkv), dout = bf16_copy(want.dout);
  auto out = bf16_copy(random_vec(rows * C, 36));  // garbage cuDNN must overwrite
  auto lse = cuda::DeviceBuffer::floats(int64_t(stats));
  auto row_dot = cuda::DeviceBuffer::floats(int64_t(stats));
  attention.forward(out.as<Bf16>(), lse.as<float>(), qkv.as<Bf16>(), B, T, C, NH, gpu.s());
  check_parity("cudnn_attention_forward out", widened(to_host<uint16_t>(out, rows * C, gpu)),
               want.out, kTensorCoreOutError);
  check_parity("cudnn_attention_forward lse", to_host(lse, gpu), want.lse, kTensorCoreLseError);

  const Vec dbias_start = random_vec(size_t(3) * C, 39);  // added to
  const auto backward = [&] {
    auto dqkv = bf16_copy(random_vec(rows * 3 * C, 37));  // written
    auto dbias = to_device(dbias_start, gpu);
    attention.backward(dqkv.as<Bf16>(), dbias.as<float>(), row_dot.as<float>(), dout.as<Bf16>(),
                       qkv.as<Bf16>(), out.as<Bf16>(), lse.as<float>(), B, T, C, NH, gpu.s());
    return std::pair{to_host<uint16_t>(dqkv, rows * 3 * C, gpu), to_host(dbias, gpu)};
  };
  const auto [dqkv, dbias] = backward();
  Vec gradient(want.dqkv.size());
  for (size_t i = 0; i < gradient.size(); ++i) gradient[i] = want.dqkv[i] - want.dqkv_start[i];
  const Vec dqkv_values = widened(dqkv);
  check_parity("cudnn_attention_backward dqkv", dqkv_values, gradient, kTensorCoreDqkvError);
  std::vector<double> sums(dbias_start.begin(), dbias_start.end());
  for (size_t i = 0; i < dqkv_values.size(); ++i) sums[i % sums.size()] += dqkv_values[i];
  check_parity("cudnn_attention_backward qkv bias sums", dbias, Vec(sums.begin(), sums.end()),
               1e-5);
  const auto again = backward();
  CHECK(again.first == dqkv);
  CHECK(again.second == dbias);
}
#endif

TEST_CASE("cuda GELU, residual and scaling match the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const int64_t N = GENERATE(int64_t{2 * 7 * 48 * 4}, int64_t{1001});
  const Vec inp = random_vec(N, 40, -5.0f, 5.0f);
  const Vec other = random_vec(N, 41);
  Vec out(N);
  cpu::gelu_forward(out.data(), inp.data(), N);
  auto d_inp = to_device(inp, gpu);
  auto d_other = to_device(other, gpu);
  auto d_out = cuda::DeviceBuffer::floats(N);
  cuda::gelu_forward(d_out.as<float>(), d_inp.as<float>(), N, gpu.s());
  check_parity("gelu_forward", to_host(d_out, gpu), out, 1e-5);

  const Vec dout = random_vec(N, 42);
  Vec dinp = random_vec(N, 43);
  auto d_dout = to_device(dout, gpu);
  auto d_dinp = to_device(dinp, gpu);
  cpu::gelu_backward(dinp.data(), inp.data(), dout.data(), N);
  cuda::gelu_backward(d_dinp.as<float>(), d_inp.as<float>(), d_dout.as<float>(), N, gpu.s());
  check_parity("gelu_backward", to_host(d_dinp, gpu), dinp, 1e-5);

  cpu::residual_forward(out.data(), inp.data(), other.data(), N);
  cuda::residual_forward(d_out.as<float>(), d_inp.as<float>(), d_other.as<float>(), N, gpu.s());
  check_parity("residual_forward", to_host(d_out, gpu), out, 1e-6);

  cpu::add_inplace(out.data(), other.data(), N);
  cuda::add_inplace(d_out.as<float>(), d_other.as<float>(), N, gpu.s());
  check_parity("add_inplace", to_host(d_out, gpu), out, 1e-6);

  cpu::scale_inplace(out.data(), 0.37f, N);
  cuda::scale_inplace(d_out.as<float>(), 0.37f, N, gpu.s());
  check_parity("scale_inplace", to_host(d_out, gpu), out, 1e-6);

  // Summed in double on both sides, in different orders: agree to double rounding.
  const double cpu_sum = cpu::sum_of_squares(out.data(), N);
  auto d_sum = cuda::DeviceBuffer(sizeof(double));
  auto d_parts = cuda::DeviceBuffer(sizeof(double) * cuda::kSumOfSquaresParts);
  cuda::sum_of_squares(d_sum.as<double>(), d_parts.as<double>(), d_out.as<float>(),
                       ds::tensor::DType::kF32, N, gpu.s());
  const double gpu_sum = to_host<double>(d_sum, 1, gpu)[0];
  INFO("sum_of_squares: cpu " << cpu_sum << " gpu " << gpu_sum);
  CHECK(std::abs(gpu_sum - cpu_sum) <= 1e-6 * cpu_sum);

  cuda::fill_zero(d_out.as<float>(), N, gpu.s());
  check_parity("fill_zero", to_host(d_out, gpu), Vec(N, 0.0f), 0.0);
}

TEST_CASE("cuda softmax cross-entropy matches the CPU, ignored targets included", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const auto [N, V] = GENERATE(std::pair{14, 97}, std::pair{3, 5003});
  const bool in_place = GENERATE(false, true);
  INFO("N=" << N << " V=" << V << " probs aliasing logits=" << in_place);
  const Vec logits = random_vec(size_t(N) * V, 50, -8.0f, 8.0f);
  Tokens targets = random_tokens(N, V, 51);
  targets[1] = cpu::kIgnoreTarget;
  Vec losses(N), probs(logits.size());
  cpu::softmax_cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N,
                                     V);
  auto d_logits = to_device(logits, gpu);
  auto d_targets = to_device(targets, gpu);
  auto d_losses = cuda::DeviceBuffer::floats(N);
  auto d_probs_own = cuda::DeviceBuffer::floats(in_place ? 0 : int64_t(probs.size()));
  float* d_probs = in_place ? d_logits.as<float>() : d_probs_own.as<float>();
  cuda::softmax_cross_entropy_forward(d_losses.as<float>(), d_probs, d_logits.as<float>(),
                                      d_targets.as<int32_t>(), N, V, gpu.s());
  const Vec gpu_losses = to_host(d_losses, gpu);
  check_parity("softmax_cross_entropy_forward losses", gpu_losses, losses, 1e-5);
  CHECK(gpu_losses[1] == 0.0f);
  check_parity("softmax_cross_entropy_forward probs",
               to_host(in_place ? d_logits : d_probs_own, gpu), probs, 1e-5);

  // dlogits written over probs, as the training step does.
  const float dloss = 1.0f / float(N);
  cpu::softmax_cross_entropy_backward(probs.data(), probs.data(), targets.data(), dloss, N, V);
  cuda::softmax_cross_entropy_backward(d_probs, d_probs, d_targets.as<int32_t>(), dloss, N, V,
                                       gpu.s());
  const Vec dlogits = to_host(in_place ? d_logits : d_probs_own, gpu);
  check_parity("softmax_cross_entropy_backward", dlogits, probs, 1e-5);
  for (int v = 0; v < V; ++v) REQUIRE(dlogits[size_t(V) + v] == 0.0f);  // the ignored row

  // The fused form (the training forward): the same losses and dlogits in one pass.
  auto d_fused = to_device(logits, gpu);
  auto d_fused_losses = cuda::DeviceBuffer::floats(N);
  cuda::softmax_cross_entropy_fused(d_fused_losses.as<float>(), d_fused.as<float>(),
                                    d_fused.as<float>(), d_targets.as<int32_t>(), dloss, N, V,
                                    gpu.s());
  check_parity("softmax_cross_entropy_fused losses", to_host(d_fused_losses, gpu), losses, 1e-5);
  const Vec fused = to_host(d_fused, gpu);
  check_parity("softmax_cross_entropy_fused dlogits", fused, probs, 1e-5);
  CHECK(fused == dlogits);  // the same kernel arithmetic as forward + backward
}

TEST_CASE("a failed CUDA call throws ds::Error naming the call", "[cuda]") {
  // Runs without a GPU too: there the allocation fails for want of a device.
  try {
    cuda::DeviceBuffer too_big(size_t{1} << 52);
    FAIL("a 4 PiB device allocation succeeded");
  } catch (const ds::Error& error) {
    INFO(error.what());
    CHECK(std::string(error.what()).find("cudaMalloc") != std::string::npos);
  }
}
