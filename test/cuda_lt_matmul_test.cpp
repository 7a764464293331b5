// LtMatmul (tensor/cuda/lt_matmul.h), the cuBLASLt matmuls with fused epilogues, against the
// fp32 CPU kernels of tensor/cpu/kernels.h, in both weight layouts, at aligned sizes (where the
// epilogues fuse) and odd ones (N, IC, OC not multiples of 8: plain GEMMs plus separate
// kernels), with fusion on and off. Inputs are rounded to the storage dtype first; the CPU
// computes in fp32 on the rounded values. Thresholds on max|gpu-cpu| / max|cpu|:
//   f32   1e-5  fp32 sums of up to ~100 products in cuBLASLt's order;
//   tf32  2e-3  inputs rounded to a 10-bit significand inside the GEMM (2^-11 each);
//   f32 as bf16  1e-2  inputs rounded to bf16's 8-bit significand inside the GEMM (2^-9 each);
//   bf16  1e-2  the result rounded to 8 bits (half an ulp: 2e-3), at most twice on the unfused
//               paths (the GEMM's stored result, then the GELU or the bias sum);
//   f16   2e-3  the same with 11 bits (2.4e-4 per rounding).
// GELU-derived values on the fused f32 path are held to 1e-3: cuBLASLt may evaluate tanh with
// the hardware approximation (about 2^-11 relative); the printed error says whether it does.
// Each check's name ends in [fused] or [unfused]: the path LtMatmul took (its stats), so the
// parity summary of scripts/gpu-check.sh shows which epilogues cuBLASLt accepted.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numbers>
#include <string>
#include <vector>

#include "cuda_test_helpers.h"
#include "tensor/cpu/cast.h"
#include "tensor/cpu/kernels.h"
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/lt_matmul.h"
#include "tensor/dtype.h"
#include "util/error.h"

namespace cpu = ds::tensor::cpu;
using namespace ds_cuda_test;
using cpu::WeightLayout;
using ds::tensor::DType;
using ds::tensor::MatmulPrecision;
using ds::tensor::cuda::LtMatmul;

namespace {

// A storage dtype with the compute options it is tested under.
struct Precision {
  DType dtype;
  MatmulPrecision compute;
  const char* name;
  double threshold;
};

const Precision kF32{DType::kF32, MatmulPrecision::kFp32, "f32", 1e-5};
const Precision kTf32{DType::kF32, MatmulPrecision::kTf32, "tf32", 2e-3};
const Precision kF32AsBf16{DType::kF32, MatmulPrecision::kBf16, "f32 as bf16", 1e-2};
const Precision kBf16{DType::kBF16, MatmulPrecision::kFp32, "bf16", 1e-2};
const Precision kF16{DType::kF16, MatmulPrecision::kFp32, "f16", 2e-3};

// GELU-derived values: the fp32 paths allow for a hardware tanh in cuBLASLt's epilogue.
double gelu_threshold(const Precision& p) { return std::max(p.threshold, 1e-3); }

// Whether the calls since `before` all ran their epilogue step fused.
const char* path(const LtMatmul& lt, const LtMatmul::Stats& before) {
  return lt.stats().unfused == before.unfused ? "[fused]" : "[unfused]";
}

// e.g. "lt backward dbias bf16 OutIn 7x33x65 [unfused]".
std::string named(const std::string& what, const Precision& p, const std::string& where,
                  const char* taken) {
  return "lt " + what + " " + p.name + " " + where + " " + taken;
}

std::string shape_of(WeightLayout layout, int a, int b, int c) {
  return std::string(layout == WeightLayout::kInOut ? "InOut " : "OutIn ") + std::to_string(a) +
         "x" + std::to_string(b) + "x" + std::to_string(c);
}

const char* layout_name(WeightLayout layout) {
  return layout == WeightLayout::kInOut ? "InOut" : "OutIn";
}

double gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
double gelu_erf(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double gelu_tanh_grad(double x) {
  const double th = std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + th) +
         0.5 * x * (1.0 - th * th) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}
double gelu_erf_grad(double x) {
  return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) +
         x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * std::numbers::pi);
}

// An informational line in the parity summary (neither ok nor FAIL).
void report(const std::string& what, double value) {
  if (std::getenv("DS_PARITY_REPORT") != nullptr) {
    std::printf("parity %-45s %.3e info\n", what.c_str(), value);
  }
}

}  // namespace

TEST_CASE("cuda lt matmul matches the CPU in both layouts, fused and not", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const Precision p = GENERATE(kF32, kTf32, kF32AsBf16, kBf16, kF16);
  const auto layout = GENERATE(WeightLayout::kInOut, WeightLayout::kOutIn);
  const bool with_bias = GENERATE(true, false);
  const bool fuse = GENERATE(true, false);
  const auto [N, IC, OC] = GENERATE(std::tuple{14, 48, 96}, std::tuple{7, 33, 65});
  // Timed algorithms: each candidate runs several times, yet every += must add once.
  const bool timed = GENERATE(false, true);
  INFO(p.name << " layout=" << layout_name(layout) << " bias=" << with_bias << " fuse=" << fuse
              << " N=" << N << " IC=" << IC << " OC=" << OC << " timed=" << timed);
  LtMatmul lt(
      LtMatmul::Options{.precision = p.compute, .fuse_epilogues = fuse, .time_algorithms = timed});
  const DType dtype = p.dtype;
  const std::string where = shape_of(layout, N, IC, OC) + (timed ? " timed" : "");
  const Vec inp = rounded(random_vec(size_t(N) * IC, 20), dtype);
  const Vec weight = rounded(random_vec(size_t(IC) * OC, 21), dtype);
  const Vec bias = rounded(random_vec(OC, 22), dtype);
  Vec out(size_t(N) * OC);
  cpu::matmul_forward(out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr, N,
                      IC, OC, layout);
  auto d_inp = to_device(inp, dtype, gpu);
  auto d_weight = to_device(weight, dtype, gpu);
  auto d_bias = to_device(bias, dtype, gpu);
  cuda::DeviceBuffer d_out(bytes_of(out.size(), dtype));
  LtMatmul::Stats before = lt.stats();
  lt.forward(d_out.data(), d_inp.data(), d_weight.data(), with_bias ? d_bias.data() : nullptr, N,
             IC, OC, layout, dtype, gpu.s());
  check_parity(named("forward", p, where, with_bias ? path(lt, before) : ""),
               to_host(d_out, out.size(), dtype, gpu), out, p.threshold);

  const Vec dout = rounded(random_vec(out.size(), 23), dtype);
  Vec dinp = rounded(random_vec(inp.size(), 24), dtype);
  Vec dweight = rounded(random_vec(weight.size(), 25), dtype);
  Vec dbias = rounded(random_vec(OC, 26), dtype);
  auto d_dout = to_device(dout, dtype, gpu);
  auto d_dinp = to_device(dinp, dtype, gpu);
  auto d_dweight = to_device(dweight, dtype, gpu);
  auto d_dbias = to_device(dbias, dtype, gpu);
  // Without a bias, also without dinp (the first layer's case).
  cpu::matmul_backward(with_bias ? dinp.data() : nullptr, dweight.data(),
                       with_bias ? dbias.data() : nullptr, dout.data(), inp.data(), weight.data(),
                       N, IC, OC, layout);
  before = lt.stats();
  lt.backward(with_bias ? d_dinp.data() : nullptr, d_dweight.data(),
              with_bias ? d_dbias.data() : nullptr, d_dout.data(), d_inp.data(), d_weight.data(), N,
              IC, OC, layout, dtype, gpu.s());
  const char* taken = with_bias ? path(lt, before) : "";
  check_parity(named("backward dinp", p, where, taken), to_host(d_dinp, dinp.size(), dtype, gpu),
               dinp, p.threshold);
  check_parity(named("backward dweight", p, where, taken),
               to_host(d_dweight, dweight.size(), dtype, gpu), dweight, p.threshold);
  check_parity(named("backward dbias", p, where, taken), to_host(d_dbias, OC, dtype, gpu), dbias,
               p.threshold);
}

// forward_residual (out = residual + inp·W + bias, the residual through the GEMM's C matrix) and
// input_gradient (dinp = dout·Wᵀ WRITTEN over whatever was there), as GPT-2's sublayers use them.
TEST_CASE("cuda lt matmul residual forward and written input gradient match the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const Precision p = GENERATE(kF32, kF32AsBf16, kBf16);
  const bool with_bias = GENERATE(true, false);
  const bool fuse = GENERATE(true, false);
  const bool timed = GENERATE(false, true);
  const int N = 14, IC = 48, OC = 96;
  const WeightLayout layout = WeightLayout::kInOut;
  INFO(p.name << " bias=" << with_bias << " fuse=" << fuse << " timed=" << timed);
  LtMatmul lt(
      LtMatmul::Options{.precision = p.compute, .fuse_epilogues = fuse, .time_algorithms = timed});
  const DType dtype = p.dtype;
  const std::string where = shape_of(layout, N, IC, OC) + (timed ? " timed" : "");
  const Vec inp = rounded(random_vec(size_t(N) * IC, 30), dtype);
  const Vec weight = rounded(random_vec(size_t(IC) * OC, 31), dtype);
  const Vec bias = rounded(random_vec(OC, 32), dtype);
  const Vec residual = rounded(random_vec(size_t(N) * OC, 33), dtype);
  Vec out(size_t(N) * OC);
  cpu::matmul_forward(out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr, N,
                      IC, OC, layout);
  for (size_t i = 0; i < out.size(); ++i) out[i] += residual[i];
  auto d_inp = to_device(inp, dtype, gpu);
  auto d_weight = to_device(weight, dtype, gpu);
  auto d_bias = to_device(bias, dtype, gpu);
  auto d_residual = to_device(residual, dtype, gpu);
  auto d_out = to_device(random_vec(out.size(), 34), dtype, gpu);  // garbage it must overwrite
  const LtMatmul::Stats before = lt.stats();
  lt.forward_residual(d_out.data(), d_residual.data(), d_inp.data(), d_weight.data(),
                      with_bias ? d_bias.data() : nullptr, N, IC, OC, layout, dtype, gpu.s());
  check_parity(named("forward_residual", p, where, with_bias ? path(lt, before) : ""),
               to_host(d_out, out.size(), dtype, gpu), out, p.threshold);
  check_parity(named("forward_residual leaves residual", p, where, ""),
               to_host(d_residual, residual.size(), dtype, gpu), residual, 0.0);

  const Vec dout = rounded(random_vec(out.size(), 35), dtype);
  Vec dinp(inp.size(), 0.0f), dweight(weight.size(), 0.0f);
  cpu::matmul_backward(dinp.data(), dweight.data(), nullptr, dout.data(), inp.data(), weight.data(),
                       N, IC, OC, layout);
  auto d_dout = to_device(dout, dtype, gpu);
  auto d_dinp = to_device(random_vec(dinp.size(), 36), dtype, gpu);
  lt.input_gradient(d_dinp.data(), d_dout.data(), d_weight.data(), N, IC, OC, layout, dtype,
                    gpu.s());
  check_parity(named("input_gradient", p, where, ""), to_host(d_dinp, dinp.size(), dtype, gpu),
               dinp, p.threshold);
}

// GPT-2's MLP: c_fc [C -> H] with GELU, c_proj [H -> C]. forward_gelu on c_fc, backward_gelu on
// c_proj (its input gradient through the GELU, into the pre-GELU buffer c_fc's forward kept).
TEST_CASE("cuda lt matmul GELU epilogues match the CPU's GELU and its backward", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const Precision p = GENERATE(kF32, kTf32, kF32AsBf16, kBf16, kF16);
  const auto layout = GENERATE(WeightLayout::kInOut, WeightLayout::kOutIn);
  const bool fuse = GENERATE(true, false);
  const auto [N, C, H] = GENERATE(std::tuple{14, 48, 96}, std::tuple{7, 33, 65});
  const bool timed = GENERATE(false, true);
  INFO(p.name << " layout=" << layout_name(layout) << " fuse=" << fuse << " N=" << N << " C=" << C
              << " H=" << H << " timed=" << timed);
  LtMatmul lt(
      LtMatmul::Options{.precision = p.compute, .fuse_epilogues = fuse, .time_algorithms = timed});
  const DType dtype = p.dtype;
  const std::string where = shape_of(layout, N, C, H) + (timed ? " timed" : "");
  const Vec x = rounded(random_vec(size_t(N) * C, 70), dtype);
  const Vec w_fc = rounded(random_vec(size_t(C) * H, 71, -0.5f, 0.5f), dtype);
  const Vec b_fc = rounded(random_vec(H, 72), dtype);
  const Vec w_proj = rounded(random_vec(size_t(H) * C, 73), dtype);
  Vec pre(size_t(N) * H), act(size_t(N) * H);
  cpu::matmul_forward(pre.data(), x.data(), w_fc.data(), b_fc.data(), N, C, H, layout);
  cpu::gelu_forward(act.data(), pre.data(), int64_t(act.size()));

  auto d_x = to_device(x, dtype, gpu);
  auto d_w_fc = to_device(w_fc, dtype, gpu);
  auto d_b_fc = to_device(b_fc, dtype, gpu);
  auto d_w_proj = to_device(w_proj, dtype, gpu);
  cuda::DeviceBuffer d_pre(bytes_of(pre.size(), dtype)), d_act(bytes_of(act.size(), dtype));
  LtMatmul::Stats before = lt.stats();
  lt.forward_gelu(d_act.data(), d_pre.data(), d_x.data(), d_w_fc.data(), d_b_fc.data(), N, C, H,
                  layout, dtype, gpu.s());
  const char* taken = path(lt, before);
  const bool fused_fp32 = dtype == DType::kF32 && std::string(taken) == "[fused]";
  check_parity(named("forward_gelu pre_gelu", p, where, taken),
               to_host(d_pre, pre.size(), dtype, gpu), pre, p.threshold);
  check_parity(named("forward_gelu out", p, where, taken), to_host(d_act, act.size(), dtype, gpu),
               act, fused_fp32 ? gelu_threshold(p) : p.threshold);

  // c_proj's backward: d_act = dout · W_proj^T, dpre = gelu'(pre) d_act (written); dW_proj and
  // db_proj accumulate.
  const Vec dout = rounded(random_vec(size_t(N) * C, 74), dtype);
  Vec dw_proj = rounded(random_vec(w_proj.size(), 75), dtype);
  Vec db_proj = rounded(random_vec(C, 76), dtype);
  // The device's gradients start from the same values as the CPU's, copied before the CPU adds.
  auto d_dout = to_device(dout, dtype, gpu);
  auto d_dw_proj = to_device(dw_proj, dtype, gpu);
  auto d_db_proj = to_device(db_proj, dtype, gpu);
  Vec d_act_cpu(act.size(), 0.0f), dpre(pre.size(), 0.0f);
  cpu::matmul_backward(d_act_cpu.data(), dw_proj.data(), db_proj.data(), dout.data(), act.data(),
                       w_proj.data(), N, H, C, layout);
  cpu::gelu_backward(dpre.data(), pre.data(), d_act_cpu.data(), int64_t(dpre.size()));
  auto d_dpre = to_device(random_vec(pre.size(), 77), dtype, gpu);  // garbage the op must overwrite
  before = lt.stats();
  lt.backward_gelu(d_dpre.data(), d_dw_proj.data(), d_db_proj.data(), d_dout.data(), d_act.data(),
                   d_w_proj.data(), d_pre.data(), N, H, C, layout, dtype, gpu.s());
  taken = path(lt, before);
  const double gelu_limit = dtype == DType::kF32 && (fused_fp32 || std::string(taken) == "[fused]")
                                ? gelu_threshold(p)
                                : p.threshold;
  check_parity(named("backward_gelu dpre_gelu", p, where, taken),
               to_host(d_dpre, dpre.size(), dtype, gpu), dpre, gelu_limit);
  check_parity(named("backward_gelu dweight", p, where, taken),
               to_host(d_dw_proj, dw_proj.size(), dtype, gpu), dw_proj, gelu_limit);
  check_parity(named("backward_gelu dbias", p, where, taken), to_host(d_db_proj, C, dtype, gpu),
               db_proj, p.threshold);
}

// cublasLt.h does not say which GELU its epilogues compute. On pre-activations spread over
// [-4, 4], where tanh-GELU and erf-GELU differ by up to 4.7e-4 (and their derivatives by
// 8.7e-4), the fused results must be nearer the tanh form than the erf form.
TEST_CASE("cuda lt matmul GELU epilogue is the tanh approximation", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  LtMatmul lt;
  const int N = 64, C = 64, H = 64;
  const Vec x = random_vec(size_t(N) * C, 80);
  const Vec w = random_vec(size_t(C) * H, 81, -0.5f, 0.5f);
  auto d_x = to_device(x, gpu);
  auto d_w = to_device(w, gpu);
  auto d_pre = cuda::DeviceBuffer::floats(N * H);
  auto d_act = cuda::DeviceBuffer::floats(N * H);
  LtMatmul::Stats before = lt.stats();
  lt.forward_gelu(d_act.data(), d_pre.data(), d_x.data(), d_w.data(), nullptr, N, C, H,
                  WeightLayout::kInOut, DType::kF32, gpu.s());
  if (lt.stats().fused == before.fused) {
    WARN("cuBLASLt has no GELU_AUX epilogue for this shape: the GELU form is not checked");
    return;
  }
  const Vec pre = to_host(d_pre, gpu);
  const Vec act = to_host(d_act, gpu);
  double tanh_error = 0.0, erf_error = 0.0, spread = 0.0;
  for (size_t i = 0; i < pre.size(); ++i) {
    tanh_error = std::max(tanh_error, std::abs(act[i] - gelu_tanh(pre[i])));
    erf_error = std::max(erf_error, std::abs(act[i] - gelu_erf(pre[i])));
    spread = std::max(spread, double(std::abs(pre[i])));
  }
  INFO("pre-activations up to " << spread << "; GELU epilogue: max error " << tanh_error
                                << " to the tanh form, " << erf_error << " to the erf form");
  report("lt GELU epilogue: max error to tanh form", tanh_error);
  report("lt GELU epilogue: max error to erf form", erf_error);
  REQUIRE(spread > 2.5);
  CHECK(tanh_error < erf_error);

  // DGELU: dpre = gelu'(pre) (dout · W^T), with d_act computed here in double.
  const Vec dout = random_vec(size_t(N) * C, 82);
  auto d_dout = to_device(dout, gpu);
  auto d_dpre = cuda::DeviceBuffer::floats(N * H);
  auto d_dw = cuda::DeviceBuffer::floats(H * C);
  before = lt.stats();
  // w, c_fc's [C][H] weight above, serves as a c_proj [H -> C] weight in the kOutIn layout
  // ([OC][IC]): d_act[n,h] = sum over c of dout[n,c] w[c][h].
  lt.backward_gelu(d_dpre.data(), d_dw.data(), nullptr, d_dout.data(), d_act.data(), d_w.data(),
                   d_pre.data(), N, H, C, WeightLayout::kOutIn, DType::kF32, gpu.s());
  if (lt.stats().fused == before.fused) {
    WARN("cuBLASLt has no DGELU epilogue for this shape: the GELU gradient form is not checked");
    return;
  }
  const Vec dpre = to_host(d_dpre, gpu);
  double dtanh_error = 0.0, derf_error = 0.0;
  for (int n = 0; n < N; ++n) {
    for (int h = 0; h < H; ++h) {
      double grad = 0.0;
      for (int c = 0; c < C; ++c) grad += double(dout[size_t(n) * C + c]) * w[size_t(c) * H + h];
      const size_t i = size_t(n) * H + h;
      dtanh_error = std::max(dtanh_error, std::abs(dpre[i] - gelu_tanh_grad(pre[i]) * grad));
      derf_error = std::max(derf_error, std::abs(dpre[i] - gelu_erf_grad(pre[i]) * grad));
    }
  }
  INFO("DGELU epilogue: max error " << dtanh_error << " to the tanh form, " << derf_error
                                    << " to the erf form");
  report("lt DGELU epilogue: max error to tanh form", dtanh_error);
  report("lt DGELU epilogue: max error to erf form", derf_error);
  CHECK(dtanh_error < derf_error);
}

TEST_CASE("cuda lt matmul: a repeated step plans nothing, allocates nothing, repeats its bits",
          "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const DType dtype = GENERATE(DType::kBF16, DType::kF32);
  // Timed algorithms are timed in the first step only, and kept.
  const bool timed = GENERATE(false, true);
  INFO(ds::tensor::dtype_name(dtype) << " timed=" << timed);
  LtMatmul lt(LtMatmul::Options{.time_algorithms = timed});
  const int N = 32, C = 64, H = 256;
  auto d_x = to_device(random_vec(size_t(N) * C, 90), dtype, gpu);
  auto d_w_fc = to_device(random_vec(size_t(C) * H, 91), dtype, gpu);
  auto d_b_fc = to_device(random_vec(H, 92), dtype, gpu);
  auto d_w_proj = to_device(random_vec(size_t(H) * C, 93), dtype, gpu);
  auto d_b_proj = to_device(random_vec(C, 94), dtype, gpu);
  cuda::DeviceBuffer d_pre(bytes_of(size_t(N) * H, dtype)), d_act(bytes_of(size_t(N) * H, dtype));
  cuda::DeviceBuffer d_y(bytes_of(size_t(N) * C, dtype));
  auto d_dy = to_device(random_vec(size_t(N) * C, 95), dtype, gpu);
  cuda::DeviceBuffer d_dpre(bytes_of(size_t(N) * H, dtype)), d_dx(bytes_of(size_t(N) * C, dtype));
  cuda::DeviceBuffer d_dw_fc(bytes_of(size_t(C) * H, dtype)), d_db_fc(bytes_of(H, dtype));
  cuda::DeviceBuffer d_dw_proj(bytes_of(size_t(H) * C, dtype)), d_db_proj(bytes_of(C, dtype));
  const auto step = [&] {
    for (auto* g : {&d_dx, &d_dw_fc, &d_db_fc, &d_dw_proj, &d_db_proj}) {
      DS_CUDA_CALL(cudaMemsetAsync(g->data(), 0, g->bytes(), gpu.s()));
    }
    lt.forward_gelu(d_act.data(), d_pre.data(), d_x.data(), d_w_fc.data(), d_b_fc.data(), N, C, H,
                    WeightLayout::kInOut, dtype, gpu.s());
    lt.forward(d_y.data(), d_act.data(), d_w_proj.data(), d_b_proj.data(), N, H, C,
               WeightLayout::kInOut, dtype, gpu.s());
    lt.backward_gelu(d_dpre.data(), d_dw_proj.data(), d_db_proj.data(), d_dy.data(), d_act.data(),
                     d_w_proj.data(), d_pre.data(), N, H, C, WeightLayout::kInOut, dtype, gpu.s());
    lt.backward(d_dx.data(), d_dw_fc.data(), d_db_fc.data(), d_dpre.data(), d_x.data(),
                d_w_fc.data(), N, C, H, WeightLayout::kInOut, dtype, gpu.s());
    gpu.stream.synchronize();
    std::vector<std::vector<char>> results;
    for (const auto* b : {&d_y, &d_dx, &d_dw_fc, &d_db_fc, &d_dw_proj, &d_db_proj}) {
      results.emplace_back(b->bytes());
      b->download(results.back().data(), b->bytes(), gpu.s());
    }
    return results;
  };
  const auto first = step();
  const LtMatmul::Stats after_first = lt.stats();
  size_t free_before = 0, free_after = 0, total = 0;
  DS_CUDA_CALL(cudaMemGetInfo(&free_before, &total));
  const auto second = step();
  DS_CUDA_CALL(cudaMemGetInfo(&free_after, &total));
  INFO("plans " << after_first.plans << " (" << after_first.timed << " timed), fused "
                << after_first.fused << ", unfused " << after_first.unfused
                << "; device memory free " << free_before << " then " << free_after);
  CHECK(after_first.plans > 0);
  CHECK(lt.stats().plans == after_first.plans);
  CHECK(lt.stats().timed == after_first.timed);
  CHECK(lt.stats().device_allocations == after_first.device_allocations);
  CHECK(free_after == free_before);
  CHECK(second == first);  // deterministic: the same algorithms, the same bits
}

// At a GPT-2-sized shape cuBLASLt proposes several algorithms, so they are timed (each runs four
// times), and the weight gradient, which the GEMM adds to, still has the product added once: the
// timed LtMatmul's results are the untimed one's up to the order of the sums.
TEST_CASE("cuda lt matmul times its algorithms at a model's shape and adds once", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const int N = 2048, IC = 768, OC = 3072;
  const Vec inp = rounded(random_vec(size_t(N) * IC, 110), DType::kBF16);
  const Vec weight = rounded(random_vec(size_t(IC) * OC, 111), DType::kBF16);
  const Vec dout = rounded(random_vec(size_t(N) * OC, 112), DType::kBF16);
  const Vec dweight = random_vec(weight.size(), 113);
  auto d_inp = to_device(inp, DType::kBF16, gpu);
  auto d_weight = to_device(weight, DType::kBF16, gpu);
  auto d_dout = to_device(dout, DType::kBF16, gpu);
  std::vector<Vec> results;
  for (const bool timed : {false, true}) {
    LtMatmul lt(LtMatmul::Options{.time_algorithms = timed});
    auto d_dweight = to_device(dweight, DType::kF32, gpu);
    cuda::DeviceBuffer d_dinp(bytes_of(inp.size(), DType::kBF16));
    lt.backward(nullptr, d_dweight.data(), nullptr, d_dout.data(), d_inp.data(), d_weight.data(), N,
                IC, OC, WeightLayout::kInOut, ds::tensor::cuda::kFp32Products, gpu.s());
    lt.input_gradient(d_dinp.data(), d_dout.data(), d_weight.data(), N, IC, OC,
                      WeightLayout::kInOut, DType::kBF16, gpu.s());
    if (timed) {
      INFO("plans " << lt.stats().plans << ", timed " << lt.stats().timed << ", faster than the "
                    << "heuristic's first " << lt.stats().faster_than_first);
      CHECK(lt.stats().timed > 0);
    }
    results.push_back(to_host(d_dweight, dweight.size(), DType::kF32, gpu));
  }
  check_parity("lt timed algorithms dweight += once", results[1], results[0], 1e-5);
}

TEST_CASE("cuda lt matmul refuses misaligned pointers and says why", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  LtMatmul lt;
  const int N = 4, IC = 8, OC = 8;
  cuda::DeviceBuffer inp(2 * (N * IC + 8)), weight(2 * IC * OC), out(2 * N * OC);
  const void* shifted = static_cast<const char*>(inp.data()) + 2;  // one bf16 element in
  try {
    lt.forward(out.data(), shifted, weight.data(), nullptr, N, IC, OC, WeightLayout::kInOut,
               DType::kBF16, gpu.s());
    FAIL("a 2-byte aligned input was accepted");
  } catch (const ds::Error& error) {
    INFO(error.what());
    CHECK(std::string(error.what()).find("inp") != std::string::npos);
    CHECK(std::string(error.what()).find("16-byte aligned") != std::string::npos);
  }
}

// The switch itself needs no GPU: unset or 1 times the algorithms, 0 keeps the heuristic's first,
// anything else is warned about and times them.
TEST_CASE("DS_GEMM_TUNING turns the algorithm timing off only with 0", "[cuda]") {
  const char* before = std::getenv("DS_GEMM_TUNING");
  const std::string saved = before != nullptr ? before : "";
  unsetenv("DS_GEMM_TUNING");
  CHECK(LtMatmul::timing_requested());
  setenv("DS_GEMM_TUNING", "1", 1);
  CHECK(LtMatmul::timing_requested());
  setenv("DS_GEMM_TUNING", "0", 1);
  CHECK_FALSE(LtMatmul::timing_requested());
  setenv("DS_GEMM_TUNING", "off", 1);
  CHECK(LtMatmul::timing_requested());
  if (before != nullptr) {
    setenv("DS_GEMM_TUNING", saved.c_str(), 1);
  } else {
    unsetenv("DS_GEMM_TUNING");
  }
}
