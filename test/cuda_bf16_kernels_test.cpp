// The mixed-precision kernels of tensor/cuda/bf16_kernels.h against the fp32 CPU kernels of
// tensor/cpu/kernels.h, in f32, bf16 and f16 storage. Inputs are rounded to the storage dtype
// first and the CPU computes in fp32 on those rounded values, so what the check measures is the
// GPU's one rounding of each result (plus fp32 summation order). Thresholds on
// max|gpu-cpu| / max|cpu|:
//   f32  1e-5 (1e-6 for sums the GPU does in the CPU's order), as cuda_kernels_test.cpp;
//   bf16 1e-2: an 8-bit significand, half an ulp is 2^-9 = 2e-3 of a value, and a value rounded
//        twice (a stored activation read back, then the result) stays well inside;
//   f16  2e-3: an 11-bit significand, half an ulp is 2^-12 = 2.4e-4.
// Gradients in fp32 (the embedding's) and fp32 side outputs (layernorm's mean and rstd, the
// losses) are held to the fp32 thresholds whatever the storage dtype. Without a GPU each case
// WARNs and passes.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cuda_test_helpers.h"
#include "tensor/cpu/cast.h"
#include "tensor/cpu/kernels.h"
#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/kernels.h"
#include "tensor/dtype.h"

namespace cpu = ds::tensor::cpu;
namespace mixed = ds::tensor::cuda::mixed;
using namespace ds_cuda_test;
using ds::tensor::DType;

namespace {

double threshold(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return 1e-2;
    case DType::kF16:
      return 2e-3;
    case DType::kF32:
      break;
  }
  return 1e-5;
}

std::string named(const std::string& what, DType dtype) {
  return what + " " + std::string(ds::tensor::dtype_name(dtype));
}

}  // namespace

TEST_CASE("cuda mixed-precision encoder matches the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const DType dtype = GENERATE(DType::kF32, DType::kBF16, DType::kF16);
  INFO(ds::tensor::dtype_name(dtype));
  const int B = 2, T = 7, C = 45, V = 97;
  Tokens tokens = random_tokens(B * T, V, 1);
  tokens[3] = tokens[0];  // a repeated token: two rows add into one row of dwte
  tokens[T + 3] = tokens[0];
  const Vec wte = rounded(random_vec(size_t(V) * C, 2), dtype);
  const Vec wpe = rounded(random_vec(size_t(T) * C, 3), dtype);
  Vec out(size_t(B) * T * C);
  cpu::encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  auto d_tokens = to_device(tokens, gpu);
  auto d_wte = to_device(wte, dtype, gpu);
  auto d_wpe = to_device(wpe, dtype, gpu);
  cuda::DeviceBuffer d_out(bytes_of(out.size(), dtype));
  mixed::encoder_forward(d_out.data(), d_tokens.as<int32_t>(), d_wte.data(), d_wpe.data(), B, T, C,
                         dtype, gpu.s());
  check_parity(named("mixed encoder_forward", dtype), to_host(d_out, out.size(), dtype, gpu), out,
               dtype == DType::kF32 ? 1e-6 : threshold(dtype));

  // Without positions the output is the stored row itself: bitwise.
  cpu::encoder_forward(out.data(), tokens.data(), wte.data(), nullptr, B, T, C);
  mixed::encoder_forward(d_out.data(), d_tokens.as<int32_t>(), d_wte.data(), nullptr, B, T, C,
                         dtype, gpu.s());
  check_parity(named("mixed encoder_forward no wpe", dtype), to_host(d_out, out.size(), dtype, gpu),
               out, 0.0);

  // fp32 gradients, summed in the CPU's order: expected bitwise.
  const Vec dout = rounded(random_vec(out.size(), 4), dtype);
  Vec dwte = random_vec(wte.size(), 5);
  Vec dwpe = random_vec(wpe.size(), 6);
  auto d_dout = to_device(dout, dtype, gpu);
  auto d_dwte = to_device(dwte, gpu);
  auto d_dwpe = to_device(dwpe, gpu);
  cpu::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);
  ds::tensor::cuda::TokenBuckets buckets;
  buckets.build(d_tokens.as<int32_t>(), int64_t{B} * T, gpu.s());
  mixed::encoder_backward(d_dwte.as<float>(), d_dwpe.as<float>(), d_dout.data(), B, T, C, buckets,
                          dtype, gpu.s());
  check_parity(named("mixed encoder_backward dwte", dtype), to_host(d_dwte, gpu), dwte, 1e-6);
  check_parity(named("mixed encoder_backward dwpe", dtype), to_host(d_dwpe, gpu), dwpe, 1e-6);
}

TEST_CASE("cuda mixed-precision layernorm matches the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const DType dtype = GENERATE(DType::kF32, DType::kBF16, DType::kF16);
  const auto [N, C] = GENERATE(std::pair{14, 48}, std::pair{5, 131});
  INFO(ds::tensor::dtype_name(dtype) << " N=" << N << " C=" << C);
  const double limit = threshold(dtype);
  const Vec inp = rounded(random_vec(size_t(N) * C, 10, -2.0f, 3.0f), dtype);
  const Vec weight = rounded(random_vec(C, 11), dtype);
  const Vec bias = rounded(random_vec(C, 12), dtype);
  Vec out(inp.size()), mean(N), rstd(N);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), N, C, 1e-5f);
  auto d_inp = to_device(inp, dtype, gpu);
  auto d_weight = to_device(weight, dtype, gpu);
  auto d_bias = to_device(bias, dtype, gpu);
  cuda::DeviceBuffer d_out(bytes_of(out.size(), dtype));
  auto d_mean = cuda::DeviceBuffer::floats(N);
  auto d_rstd = cuda::DeviceBuffer::floats(N);
  mixed::layernorm_forward(d_out.data(), d_mean.as<float>(), d_rstd.as<float>(), d_inp.data(),
                           d_weight.data(), d_bias.data(), N, C, 1e-5f, dtype, gpu.s());
  check_parity(named("mixed layernorm_forward out", dtype), to_host(d_out, out.size(), dtype, gpu),
               out, limit);
  check_parity(named("mixed layernorm_forward mean", dtype), to_host(d_mean, gpu), mean, 1e-5);
  check_parity(named("mixed layernorm_forward rstd", dtype), to_host(d_rstd, gpu), rstd, 1e-5);

  const Vec dout = rounded(random_vec(out.size(), 13), dtype);
  Vec dinp = rounded(random_vec(inp.size(), 14), dtype);
  Vec dweight = rounded(random_vec(C, 15), dtype);
  Vec dbias = rounded(random_vec(C, 16), dtype);
  auto d_dout = to_device(dout, dtype, gpu);
  auto d_dinp = to_device(dinp, dtype, gpu);
  auto d_dweight = to_device(dweight, dtype, gpu);
  auto d_dbias = to_device(dbias, dtype, gpu);
  auto d_partials = ds::tensor::cuda::DeviceBuffer::floats(mixed::layernorm_partial_floats(C));
  cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  mixed::layernorm_backward(d_dinp.data(), d_dinp.data(), d_dweight.data(), d_dbias.data(),
                            d_dout.data(), d_inp.data(), d_weight.data(), d_mean.as<float>(),
                            d_rstd.as<float>(), N, C, d_partials.as<float>(), dtype, gpu.s());
  check_parity(named("mixed layernorm_backward dinp", dtype),
               to_host(d_dinp, dinp.size(), dtype, gpu), dinp, limit);
  check_parity(named("mixed layernorm_backward dweight", dtype),
               to_host(d_dweight, dweight.size(), dtype, gpu), dweight, limit);
  check_parity(named("mixed layernorm_backward dbias", dtype),
               to_host(d_dbias, dbias.size(), dtype, gpu), dbias, limit);
}

TEST_CASE("cuda mixed-precision GELU, residual and add match the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const DType dtype = GENERATE(DType::kF32, DType::kBF16, DType::kF16);
  const int64_t N = GENERATE(int64_t{2 * 7 * 48 * 4}, int64_t{1001});
  INFO(ds::tensor::dtype_name(dtype) << " N=" << N);
  const double limit = threshold(dtype);
  const Vec inp = rounded(random_vec(N, 40, -5.0f, 5.0f), dtype);
  const Vec other = rounded(random_vec(N, 41), dtype);
  Vec out(N);
  cpu::gelu_forward(out.data(), inp.data(), N);
  auto d_inp = to_device(inp, dtype, gpu);
  auto d_other = to_device(other, dtype, gpu);
  cuda::DeviceBuffer d_out(bytes_of(N, dtype));
  mixed::gelu_forward(d_out.data(), d_inp.data(), N, dtype, gpu.s());
  check_parity(named("mixed gelu_forward", dtype), to_host(d_out, N, dtype, gpu), out, limit);
  auto d_in_place = to_device(inp, dtype, gpu);
  mixed::gelu_forward(d_in_place.data(), d_in_place.data(), N, dtype, gpu.s());
  check_parity(named("mixed gelu_forward in place", dtype), to_host(d_in_place, N, dtype, gpu), out,
               limit);

  const Vec dout = rounded(random_vec(N, 42), dtype);
  Vec dinp = rounded(random_vec(N, 43), dtype);
  auto d_dout = to_device(dout, dtype, gpu);
  auto d_dinp = to_device(dinp, dtype, gpu);
  cpu::gelu_backward(dinp.data(), inp.data(), dout.data(), N);
  mixed::gelu_backward(d_dinp.data(), d_inp.data(), d_dout.data(), N, dtype, gpu.s());
  check_parity(named("mixed gelu_backward", dtype), to_host(d_dinp, N, dtype, gpu), dinp, limit);

  // The in-place form writes gelu'(x) * d: the CPU's backward into zeros.
  Vec dgelu(N, 0.0f);
  cpu::gelu_backward(dgelu.data(), inp.data(), dout.data(), N);
  auto d_d = to_device(dout, dtype, gpu);
  mixed::gelu_backward_inplace(d_d.data(), d_inp.data(), N, dtype, gpu.s());
  check_parity(named("mixed gelu_backward_inplace", dtype), to_host(d_d, N, dtype, gpu), dgelu,
               limit);

  cpu::residual_forward(out.data(), inp.data(), other.data(), N);
  mixed::residual_forward(d_out.data(), d_inp.data(), d_other.data(), N, dtype, gpu.s());
  check_parity(named("mixed residual_forward", dtype), to_host(d_out, N, dtype, gpu), out,
               dtype == DType::kF32 ? 1e-6 : limit);

  const Vec start = to_host(d_out, N, dtype, gpu);  // the stored sums, as the CPU must see them
  Vec sum = start;
  cpu::add_inplace(sum.data(), other.data(), N);
  mixed::add_inplace(d_out.data(), d_other.data(), N, dtype, gpu.s());
  check_parity(named("mixed add_inplace", dtype), to_host(d_out, N, dtype, gpu), sum,
               dtype == DType::kF32 ? 1e-6 : limit);
}

TEST_CASE("cuda mixed-precision fused softmax cross-entropy matches the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const DType dtype = GENERATE(DType::kF32, DType::kBF16, DType::kF16);
  const auto [N, V] = GENERATE(std::pair{14, 97}, std::pair{3, 5003});
  const bool in_place = GENERATE(true, false);
  INFO(ds::tensor::dtype_name(dtype) << " N=" << N << " V=" << V << " in place=" << in_place);
  const Vec logits = rounded(random_vec(size_t(N) * V, 50, -8.0f, 8.0f), dtype);
  Tokens targets = random_tokens(N, V, 51);
  targets[1] = cpu::kIgnoreTarget;
  const float dloss = 1.0f / float(N);
  Vec losses(N), dlogits(logits.size());
  cpu::softmax_cross_entropy_forward(losses.data(), dlogits.data(), logits.data(), targets.data(),
                                     N, V);
  cpu::softmax_cross_entropy_backward(dlogits.data(), dlogits.data(), targets.data(), dloss, N, V);

  auto d_logits = to_device(logits, dtype, gpu);
  auto d_targets = to_device(targets, gpu);
  auto d_losses = cuda::DeviceBuffer::floats(N);
  // Evaluation first: losses only, the logits untouched.
  mixed::softmax_cross_entropy(d_losses.as<float>(), nullptr, d_logits.data(),
                               d_targets.as<int32_t>(), dloss, N, V, V, dtype, gpu.s());
  check_parity(named("mixed softmax_cross_entropy losses only", dtype), to_host(d_losses, gpu),
               losses, 1e-5);
  check_parity(named("mixed softmax_cross_entropy logits kept", dtype),
               to_host(d_logits, logits.size(), dtype, gpu), logits, 0.0);

  cuda::DeviceBuffer d_own(in_place ? 0 : bytes_of(logits.size(), dtype));
  void* d_dlogits = in_place ? d_logits.data() : d_own.data();
  mixed::softmax_cross_entropy(d_losses.as<float>(), d_dlogits, d_logits.data(),
                               d_targets.as<int32_t>(), dloss, N, V, V, dtype, gpu.s());
  const Vec gpu_losses = to_host(d_losses, gpu);
  check_parity(named("mixed softmax_cross_entropy losses", dtype), gpu_losses, losses, 1e-5);
  CHECK(gpu_losses[1] == 0.0f);
  const Vec gpu_dlogits = to_host(in_place ? d_logits : d_own, logits.size(), dtype, gpu);
  check_parity(named("mixed softmax_cross_entropy dlogits", dtype), gpu_dlogits, dlogits,
               threshold(dtype));
  for (int v = 0; v < V; ++v) REQUIRE(gpu_dlogits[size_t(V) + v] == 0.0f);  // the ignored row
}

TEST_CASE("cuda mixed-precision matmul helpers: bias rows and bias gradient", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const DType dtype = GENERATE(DType::kF32, DType::kBF16, DType::kF16);
  const int N = 37, OC = 65;
  INFO(ds::tensor::dtype_name(dtype));
  const Vec row = rounded(random_vec(OC, 60), dtype);
  cuda::DeviceBuffer d_rows(bytes_of(size_t(N) * OC, dtype));
  auto d_row = to_device(row, dtype, gpu);
  mixed::broadcast_rows(d_rows.data(), d_row.data(), N, OC, dtype, gpu.s());
  Vec rows(size_t(N) * OC);
  for (int n = 0; n < N; ++n) std::copy(row.begin(), row.end(), rows.begin() + size_t(n) * OC);
  check_parity(named("mixed broadcast_rows", dtype), to_host(d_rows, rows.size(), dtype, gpu), rows,
               0.0);

  const Vec dout = rounded(random_vec(size_t(N) * OC, 61), dtype);
  Vec dbias = rounded(random_vec(OC, 62), dtype);
  auto d_dout = to_device(dout, dtype, gpu);
  auto d_dbias = to_device(dbias, dtype, gpu);
  for (int c = 0; c < OC; ++c) {
    double sum = dbias[c];
    for (int n = 0; n < N; ++n) sum += dout[size_t(n) * OC + c];
    dbias[c] = float(sum);
  }
  mixed::matmul_bias_backward(d_dbias.data(), d_dout.data(), N, OC, dtype, gpu.s());
  check_parity(named("mixed matmul_bias_backward", dtype), to_host(d_dbias, OC, dtype, gpu), dbias,
               threshold(dtype));
}

// The casts of cast_kernels.h that the mixed-precision kernels lean on, at the values where
// rounding to nearest even shows: ties, the largest finite f16 and just past it, f16
// subnormals, signed zero, infinities and NaN. Bitwise against tensor/cpu/cast.h, NaN only as
// NaN (the payloads differ).
TEST_CASE("cuda casts round to nearest even at ties, overflow and subnormals", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const float inf = std::numeric_limits<float>::infinity();
  const Vec values = {1.0f + 0x1p-8f,
                      1.0f + 0x3p-8f,
                      -1.0f - 0x1p-8f,
                      1.0f + 0x1p-11f,
                      1.0f + 0x3p-11f,
                      65504.0f,
                      65519.0f,
                      65520.0f,
                      -65520.0f,
                      0x1p-25f,
                      0x3p-25f,
                      0x1p-24f,
                      0x1.8p-15f,
                      0x1p-14f,
                      1e-7f,
                      -0.0f,
                      0.0f,
                      inf,
                      -inf,
                      3.0e38f,
                      0x1.fffffep127f,
                      std::nanf(""),
                      1.0f / 3.0f,
                      -2.5f};
  const int64_t n = int64_t(values.size());
  auto d_values = to_device(values, gpu);
  for (const DType dtype : {DType::kBF16, DType::kF16}) {
    INFO(ds::tensor::dtype_name(dtype));
    std::vector<uint16_t> cpu_bits(values.size());
    cpu::from_f32(cpu_bits.data(), dtype, values.data(), n);
    cuda::DeviceBuffer d_bits(bytes_of(values.size(), dtype));
    cuda::from_f32(d_bits.data(), dtype, d_values.as<float>(), n, gpu.s());
    const std::vector<uint16_t> gpu_bits = to_host<uint16_t>(d_bits, values.size(), gpu);
    auto d_back = cuda::DeviceBuffer::floats(n);
    cuda::to_f32(d_back.as<float>(), d_bits.data(), dtype, n, gpu.s());
    const Vec back = to_host(d_back, gpu);
    Vec cpu_back(values.size());
    cpu::to_f32(cpu_back.data(), cpu_bits.data(), dtype, n);
    for (size_t i = 0; i < values.size(); ++i) {
      INFO("value " << values[i] << " cpu bits " << cpu_bits[i] << " gpu bits " << gpu_bits[i]);
      if (std::isnan(values[i])) {
        CHECK(std::isnan(back[i]));
      } else {
        CHECK(gpu_bits[i] == cpu_bits[i]);
        CHECK(std::memcmp(&back[i], &cpu_back[i], sizeof(float)) == 0);
      }
    }
  }
}
