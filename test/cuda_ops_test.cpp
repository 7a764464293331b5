// The engine-side ops of tensor::Ops (casts between storage dtypes, scaled conversions, the
// sum of squares, the SGD update) on CudaOps against cpu_ops(), on the same inputs. Casts and
// SGD round every operation as the CPU does: bitwise expected, threshold 0 for the casts and
// 1e-6 for SGD; the sum of squares is summed in another order: 1e-12 relative. And the model's
// matmuls as CudaOps runs them (cuBLASLt with fused epilogues, or cuBLAS for unaligned
// operands) at each MatmulPrecision: 1e-4 fp32, 2e-3 TF32, 1e-2 bf16-rounded inputs.
#include "tensor/cuda/cuda_ops.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <limits>
#include <vector>

#include "cuda_test_helpers.h"
#include "tensor/dtype.h"

using namespace ds_cuda_test;
using ds::tensor::DType;

namespace {

// `bytes` of host data on the device and back, through the Ops under test.
struct Mirror {
  Mirror(ds::tensor::Ops& on, const void* host, size_t size)
      : ops(on), buffer(on.allocate(size, ds::tensor::MemoryCategory::kOther)), bytes(size) {
    ops.upload(buffer.data(), host, bytes);
  }
  std::vector<char> fetch() {
    std::vector<char> out(bytes);
    ops.download(out.data(), buffer.data(), bytes);
    return out;
  }
  ds::tensor::Ops& ops;
  ds::tensor::Buffer buffer;
  size_t bytes;
};

// `values` on the device `offset` floats into their buffer (0, or 1 for views that are not
// 16-byte aligned, as cuBLASLt wants), and back.
struct Shifted {
  Shifted(ds::tensor::Ops& on, const Vec& values, int offset_floats)
      : offset(offset_floats),
        n(values.size()),
        mirror(on, padded(values, offset).data(), sizeof(float) * (values.size() + 1)) {}
  float* at() { return mirror.buffer.as<float>() + offset; }
  Vec fetch() {
    const std::vector<char> raw = mirror.fetch();
    Vec values(n);
    std::memcpy(values.data(), raw.data() + sizeof(float) * offset, sizeof(float) * n);
    return values;
  }
  static Vec padded(const Vec& values, int offset) {
    Vec out(values.size() + 1, 0.0f);
    std::copy(values.begin(), values.end(), out.begin() + offset);
    return out;
  }
  int offset;
  size_t n;
  Mirror mirror;
};

// The runs of a GPT-2 sublayer test: each matmul precision with the parity threshold of a
// sublayer run at it (two products in a row, each with its inputs rounded at bf16); every tensor
// 16-byte aligned (shift 0) or one float in (shift 1: views into a layer's buffers may be); dx
// apart from dout or dout itself (in_place, as a GPT-2 block passes it to attention).
struct SublayerCase {
  ds::tensor::MatmulPrecision precision;
  double tol;
  int shift;
  bool in_place;
};
std::ostream& operator<<(std::ostream& out, const SublayerCase& c) {
  return out << "precision " << static_cast<int>(c.precision) << " shift " << c.shift
             << " in place " << c.in_place;
}
Catch::Generators::GeneratorWrapper<SublayerCase> sublayer_cases() {
  using ds::tensor::MatmulPrecision;
  const std::pair<MatmulPrecision, double> precisions[] = {{MatmulPrecision::kFp32, 1e-4},
                                                           {MatmulPrecision::kTf32, 2e-3},
                                                           {MatmulPrecision::kBf16, 2e-2}};
  std::vector<SublayerCase> cases;
  for (const auto& [precision, tol] : precisions) {
    for (const int shift : {0, 1}) {
      for (const bool in_place : {false, true}) cases.push_back({precision, tol, shift, in_place});
    }
  }
  return Catch::Generators::from_range(cases.begin(), cases.end());
}

// Whether a sublayer at `precision` takes its bf16 path on this GPU (one with bf16 tensor cores),
// which the tests see by its smaller saved region.
bool bf16_sublayer_expected(ds::tensor::MatmulPrecision precision) {
  int major = 0;
  REQUIRE(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess);
  return precision == ds::tensor::MatmulPrecision::kBf16 && major >= 8;
}

std::vector<char> bytes_of(const Vec& v) {
  std::vector<char> out(v.size() * sizeof(float));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

}  // namespace

TEST_CASE("cuda casts and scaled conversions match the CPU bit for bit", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  ds::tensor::cuda::CudaOps gpu(0);
  ds::tensor::Ops& cpu = ds::tensor::cpu_ops();
  const int64_t n = 1031;
  const Vec values = random_vec(n, 7, -300.0f, 300.0f);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    INFO(ds::tensor::dtype_name(dtype));
    const size_t storage = 2 * static_cast<size_t>(n);
    std::vector<char> cpu_16(storage);
    cpu.from_f32(cpu_16.data(), dtype, values.data(), n);
    Mirror in(gpu, values.data(), sizeof(float) * n), out16(gpu, cpu_16.data(), storage);
    gpu.from_f32(out16.buffer.data(), dtype, in.buffer.as<float>(), n);
    CHECK(out16.fetch() == cpu_16);

    // Back to fp32, accumulated into, and scaled onto an fp32 and a 16-bit wire.
    Vec cpu_back(n);
    cpu.to_f32(cpu_back.data(), cpu_16.data(), dtype, n);
    Mirror back(gpu, values.data(), sizeof(float) * n);
    gpu.to_f32(back.buffer.as<float>(), out16.buffer.data(), dtype, n);
    CHECK(back.fetch() == bytes_of(cpu_back));

    cpu.add_f32_into(cpu_16.data(), dtype, values.data(), n);
    gpu.add_f32_into(out16.buffer.data(), dtype, in.buffer.as<float>(), n);
    CHECK(out16.fetch() == cpu_16);

    cpu.convert_scaled(cpu_back.data(), DType::kF32, cpu_16.data(), dtype, n, 0.25f);
    gpu.convert_scaled(back.buffer.data(), DType::kF32, out16.buffer.data(), dtype, n, 0.25f);
    CHECK(back.fetch() == bytes_of(cpu_back));

    cpu.add_scaled_into(cpu_16.data(), dtype, values.data(), DType::kF32, n, 0.5f);
    gpu.add_scaled_into(out16.buffer.data(), dtype, in.buffer.data(), DType::kF32, n, 0.5f);
    CHECK(out16.fetch() == cpu_16);
  }
}

TEST_CASE("cuda sum of squares and SGD match the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  ds::tensor::cuda::CudaOps gpu(0);
  ds::tensor::Ops& cpu = ds::tensor::cpu_ops();
  const int64_t n = 4099;
  Vec params = random_vec(n, 11);
  Mirror d_params(gpu, params.data(), sizeof(float) * n);
  CHECK(gpu.sum_of_squares(d_params.buffer.as<float>(), n) ==
        Approx(cpu.sum_of_squares(params.data(), n)).epsilon(1e-12));

  ds::tensor::SgdOptions options;
  options.momentum = 0.9;
  options.dampening = 0.1;
  options.nesterov = GENERATE(false, true);
  options.weight_decay = 0.01;
  INFO("nesterov: " << options.nesterov);
  Vec buffer(n, 0.0f);
  Mirror d_buffer(gpu, buffer.data(), sizeof(float) * n);
  for (int64_t step = 1; step <= 3; ++step) {
    const Vec grads = random_vec(n, 50 + uint32_t(step), -0.1f, 0.1f);
    Mirror d_grads(gpu, grads.data(), sizeof(float) * n);
    cpu.sgd_step(params.data(), ds::tensor::StepIo{grads.data()}, buffer.data(), n, 0.01, step,
                 options);
    gpu.sgd_step(d_params.buffer.as<float>(), ds::tensor::StepIo{d_grads.buffer.as<float>()},
                 d_buffer.buffer.as<float>(), n, 0.01, step, options);
  }
  Vec got(n);
  std::memcpy(got.data(), d_params.fetch().data(), sizeof(float) * n);
  check_parity("sgd_step params", got, params, 1e-6);
}

TEST_CASE("cuda ops matmuls with fused epilogues match the CPU at every precision", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  using ds::tensor::MatmulPrecision;
  using ds::tensor::WeightLayout;
  const auto [precision, tol] =
      GENERATE(std::pair{MatmulPrecision::kFp32, 1e-4}, std::pair{MatmulPrecision::kTf32, 2e-3},
               std::pair{MatmulPrecision::kBf16, 1e-2});
  // 0: every operand 16-byte aligned (cuBLASLt); 1: views one float in (cuBLAS).
  const int shift = GENERATE(0, 1);
  INFO("precision " << static_cast<int>(precision) << " shift " << shift);
  ds::tensor::cuda::CudaOps gpu(0, precision);
  ds::tensor::Ops& cpu = ds::tensor::cpu_ops();
  const int N = 24, C = 32, H = 128;  // GPT-2's MLP shape in small: C -> 4C -> C
  const Vec inp = random_vec(size_t(N) * C, 70), w_fc = random_vec(size_t(C) * H, 71, -0.3f, 0.3f);
  const Vec b_fc = random_vec(H, 72), w_proj = random_vec(size_t(H) * C, 73, -0.2f, 0.2f);
  const Vec b_proj = random_vec(C, 74), dout = random_vec(size_t(N) * C, 75);

  // Forward: pre = inp·W_fc + b_fc, act = GELU(pre), y = act·W_proj + b_proj.
  Vec pre(size_t(N) * H), act(pre.size()), y(size_t(N) * C);
  cpu.matmul_gelu_forward(act.data(), pre.data(), inp.data(), w_fc.data(), b_fc.data(), N, C, H,
                          WeightLayout::kInOut);
  cpu.matmul_forward(y.data(), act.data(), w_proj.data(), b_proj.data(), N, H, C,
                     WeightLayout::kInOut);
  Shifted d_inp(gpu, inp, shift), d_wfc(gpu, w_fc, shift), d_bfc(gpu, b_fc, shift),
      d_wproj(gpu, w_proj, shift), d_bproj(gpu, b_proj, shift), d_pre(gpu, Vec(pre.size()), shift),
      d_act(gpu, Vec(act.size()), shift), d_y(gpu, Vec(y.size()), shift);
  gpu.matmul_gelu_forward(d_act.at(), d_pre.at(), d_inp.at(), d_wfc.at(), d_bfc.at(), N, C, H,
                          WeightLayout::kInOut);
  gpu.matmul_forward(d_y.at(), d_act.at(), d_wproj.at(), d_bproj.at(), N, H, C,
                     WeightLayout::kInOut);
  check_parity("ops matmul_gelu_forward pre", d_pre.fetch(), pre, tol);
  check_parity("ops matmul_gelu_forward act", d_act.fetch(), act, std::max(tol, 1e-3));
  check_parity("ops matmul_forward", d_y.fetch(), y, tol);

  // Backward: through the projection and the GELU in one op, then the expansion.
  Vec dpre(pre.size()), dw_proj(w_proj.size(), 0.5f), db_proj(C, 0.5f);
  Vec dinp(inp.size(), 0.25f), dw_fc(w_fc.size(), 0.5f), db_fc(H, 0.5f);
  cpu.matmul_gelu_backward(dpre.data(), dw_proj.data(), db_proj.data(), dout.data(), act.data(),
                           w_proj.data(), pre.data(), N, H, C, WeightLayout::kInOut);
  cpu.matmul_backward(dinp.data(), dw_fc.data(), db_fc.data(), dpre.data(), inp.data(), w_fc.data(),
                      N, C, H, WeightLayout::kInOut);
  Shifted d_dout(gpu, dout, shift), d_dpre(gpu, Vec(dpre.size(), 9.0f), shift),
      d_dwproj(gpu, Vec(w_proj.size(), 0.5f), shift), d_dbproj(gpu, Vec(C, 0.5f), shift),
      d_dinp(gpu, Vec(inp.size(), 0.25f), shift), d_dwfc(gpu, Vec(w_fc.size(), 0.5f), shift),
      d_dbfc(gpu, Vec(H, 0.5f), shift);
  gpu.matmul_gelu_backward(d_dpre.at(), d_dwproj.at(), d_dbproj.at(), d_dout.at(), d_act.at(),
                           d_wproj.at(), d_pre.at(), N, H, C, WeightLayout::kInOut);
  gpu.matmul_backward(d_dinp.at(), d_dwfc.at(), d_dbfc.at(), d_dpre.at(), d_inp.at(), d_wfc.at(), N,
                      C, H, WeightLayout::kInOut);
  const double grad_tol = std::max(tol, 1e-3);  // through gelu', maybe the hardware tanh
  check_parity("ops matmul_gelu_backward dpre", d_dpre.fetch(), dpre, grad_tol);
  check_parity("ops matmul_gelu_backward dweight", d_dwproj.fetch(), dw_proj, tol);
  check_parity("ops matmul_gelu_backward dbias", d_dbproj.fetch(), db_proj, tol);
  check_parity("ops matmul_backward dinp", d_dinp.fetch(), dinp, grad_tol);
  check_parity("ops matmul_backward dweight", d_dwfc.fetch(), dw_fc, grad_tol);
  check_parity("ops matmul_backward dbias", d_dbfc.fetch(), db_fc, grad_tol);
}

// A bf16 run's plain matmul backward (tensor/cuda/bf16_matmul.h) skips the bf16 copies a missing
// gradient does not need: asking for one gradient at a time gives each as the CPU computes it.
TEST_CASE("cuda ops bf16 matmul backward with one gradient left out", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  using ds::tensor::WeightLayout;
  ds::tensor::cuda::CudaOps gpu(0, ds::tensor::MatmulPrecision::kBf16);
  ds::tensor::Ops& cpu = ds::tensor::cpu_ops();
  const int N = 48, IC = 64, OC = 96;
  const Vec inp = random_vec(size_t(N) * IC, 90), w = random_vec(size_t(IC) * OC, 91);
  const Vec dout = random_vec(size_t(N) * OC, 92);
  Vec dinp(inp.size(), 0.25f), dw(w.size(), 0.5f), db(OC, 0.5f);
  cpu.matmul_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), N, IC,
                      OC, WeightLayout::kInOut);
  Shifted d_inp(gpu, inp, 0), d_w(gpu, w, 0), d_dout(gpu, dout, 0);
  Shifted d_dinp(gpu, Vec(inp.size(), 0.25f), 0), d_dw(gpu, Vec(w.size(), 0.5f), 0);
  Shifted d_db(gpu, Vec(OC, 0.5f), 0);
  gpu.matmul_backward(d_dinp.at(), nullptr, nullptr, d_dout.at(), d_inp.at(), d_w.at(), N, IC, OC,
                      WeightLayout::kInOut);
  gpu.matmul_backward(nullptr, d_dw.at(), d_db.at(), d_dout.at(), d_inp.at(), d_w.at(), N, IC, OC,
                      WeightLayout::kInOut);
  check_parity("ops bf16 matmul_backward dinp alone", d_dinp.fetch(), dinp, 1e-2);
  check_parity("ops bf16 matmul_backward dweight alone", d_dw.fetch(), dw, 1e-2);
  check_parity("ops bf16 matmul_backward dbias alone", d_db.fetch(), db, 1e-2);
}

TEST_CASE("cuda ops classifier matches the CPU at every precision", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  using ds::tensor::MatmulPrecision;
  const auto [precision, tol] =
      GENERATE(std::pair{MatmulPrecision::kFp32, 1e-5}, std::pair{MatmulPrecision::kTf32, 2e-3},
               std::pair{MatmulPrecision::kBf16, 1e-2});
  INFO("precision " << static_cast<int>(precision));
  ds::tensor::cuda::CudaOps gpu(0, precision);
  ds::tensor::Ops& cpu = ds::tensor::cpu_ops();
  // Odd vocabularies, so that the GPU pads its rows, the larger first, so that the second runs on
  // buffers that held the first (the bf16 head copy's zero rows past V must be V's); one position
  // without a target; the scratch starts as NaN, which no padding may carry into the results.
  for (const int V : {1100, 1001}) {
    INFO("V=" << V);
    const int N = 24, C = 32;
    const Vec inp = random_vec(size_t(N) * C, 80);
    const Vec head = random_vec(size_t(V) * C, 81, -0.5f, 0.5f);
    std::vector<int32_t> targets(N);
    for (int n = 0; n < N; ++n) targets[n] = (n * 37 + 5) % V;
    targets[3] = ds::tensor::cpu::kIgnoreTarget;
    const float dloss = 1.0f / float(N - 1);

    Vec losses(N), scratch(size_t(cpu.classifier_scratch_floats(N, V)));
    Vec dinp(inp.size(), 0.25f), dhead(head.size(), 0.5f);
    cpu.classifier_forward(losses.data(), scratch.data(), inp.data(), head.data(), targets.data(),
                           dloss, N, C, V);
    cpu.classifier_backward(dinp.data(), dhead.data(), scratch.data(), inp.data(), head.data(), N,
                            C, V);

    Shifted d_inp(gpu, inp, 0), d_head(gpu, head, 0), d_losses(gpu, Vec(N), 0);
    Shifted d_scratch(
        gpu,
        Vec(size_t(gpu.classifier_scratch_floats(N, V)), std::numeric_limits<float>::quiet_NaN()),
        0);
    Shifted d_dinp(gpu, Vec(inp.size(), 0.25f), 0), d_dhead(gpu, Vec(head.size(), 0.5f), 0);
    Mirror d_targets(gpu, targets.data(), sizeof(int32_t) * targets.size());
    gpu.classifier_forward(d_losses.at(), d_scratch.at(), d_inp.at(), d_head.at(),
                           d_targets.buffer.as<int32_t>(), dloss, N, C, V);
    gpu.classifier_backward(d_dinp.at(), d_dhead.at(), d_scratch.at(), d_inp.at(), d_head.at(), N,
                            C, V);
    const Vec got_losses = d_losses.fetch();
    check_parity("ops classifier losses", got_losses, losses, tol);
    CHECK(got_losses[3] == 0.0f);
    check_parity("ops classifier dinp", d_dinp.fetch(), dinp, tol);
    check_parity("ops classifier dhead", d_dhead.fetch(), dhead, tol);
  }
}

namespace {

using ds::tensor::Ops;

// A GPT-2 sublayer's six parameters (layernorm, first product, projection) for a width C and a
// first product of C x M, with their gradients' start values, on the host and on the GPU (all
// `shift` floats in, as views into a layer's parameters and gradients may be).
struct SublayerParams {
  std::vector<Vec> host, grads;
  std::vector<Shifted> device, device_grads;
  SublayerParams(Ops& gpu, int C, int M, int shift, uint32_t seed) {
    const size_t sizes[] = {size_t(C), size_t(C),     size_t(C) * M,
                            size_t(M), size_t(M) * C, size_t(C)};
    for (int i = 0; i < 6; ++i) {
      const float range = i % 2 == 0 && i > 0 ? 0.2f : 1.0f;  // the two weights small
      host.push_back(random_vec(sizes[i], seed + i, -range, range));
      grads.emplace_back(sizes[i], 0.5f);
      device.emplace_back(gpu, host.back(), shift);
      device_grads.emplace_back(gpu, grads.back(), shift);
    }
  }
  Ops::SublayerWeights weights() const { return view<Ops::SublayerWeights>(host); }
  Ops::SublayerGrads host_grads() { return view<Ops::SublayerGrads>(grads); }
  Ops::SublayerWeights gpu_weights() {
    return {device[0].at(), device[1].at(), device[2].at(),
            device[3].at(), device[4].at(), device[5].at()};
  }
  Ops::SublayerGrads gpu_grads() {
    return {device_grads[0].at(), device_grads[1].at(), device_grads[2].at(),
            device_grads[3].at(), device_grads[4].at(), device_grads[5].at()};
  }
  void check(const std::string& what, double tol) {
    const char* names[] = {"ln_w", "ln_b", "w1", "b1", "w2", "b2"};
    for (int i = 0; i < 6; ++i) {
      check_parity(what + " d" + names[i], device_grads[i].fetch(), grads[i], tol);
    }
  }

 private:
  template <typename View, typename Vecs>
  static View view(Vecs& v) {
    return {v[0].data(), v[1].data(), v[2].data(), v[3].data(), v[4].data(), v[5].data()};
  }
};

}  // namespace

TEST_CASE("cuda ops MLP matches the CPU at every precision", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  // bf16 runs take the bf16 MLP (tensor/cuda/bf16_mlp.h), the others the composed one. Shifted:
  // the input, the output, dout, dx, the parameters and their gradients, the saved region and the
  // scratch (the bf16 MLP stages or realigns them).
  const SublayerCase c = GENERATE(sublayer_cases());
  INFO(c);
  const auto [precision, tol, shift, in_place] = c;
  ds::tensor::cuda::CudaOps gpu(0, precision);
  Ops& cpu = ds::tensor::cpu_ops();
  const int N = 24, C = 32, H = 128;
  SublayerParams p(gpu, C, H, shift, 90);
  const Vec x = random_vec(size_t(N) * C, 96, -2.0f, 3.0f), dout = random_vec(size_t(N) * C, 97);

  Vec out(x.size()), saved(size_t(cpu.mlp_saved_floats(N, C, H))), dx(x.size());
  Vec d_ln(x.size()), d_hidden(size_t(N) * H);
  cpu.mlp_forward(out.data(), saved.data(), x.data(), p.weights(), 1e-5f, N, C, H);
  cpu.mlp_backward(dx.data(), p.host_grads(), {d_ln.data(), d_hidden.data(), nullptr, nullptr},
                   dout.data(), saved.data(), x.data(), p.weights(), N, C, H);

  const int64_t gpu_saved = gpu.mlp_saved_floats(N, C, H);
  if (bf16_sublayer_expected(precision)) CHECK(gpu_saved < cpu.mlp_saved_floats(N, C, H));
  const float nan = std::numeric_limits<float>::quiet_NaN();  // what the sublayer must overwrite
  Shifted g_x(gpu, x, shift), g_dout(gpu, dout, shift);
  Shifted g_saved(gpu, Vec(size_t(gpu_saved), nan), shift);
  Shifted g_dln(gpu, Vec(d_ln.size(), nan), shift), g_hidden(gpu, Vec(d_hidden.size(), nan), shift);
  Shifted g_out(gpu, Vec(out.size(), nan), shift), g_dx(gpu, Vec(dx.size(), nan), shift);
  gpu.mlp_forward(g_out.at(), g_saved.at(), g_x.at(), p.gpu_weights(), 1e-5f, N, C, H);
  float* d_x = in_place ? g_dout.at() : g_dx.at();
  gpu.mlp_backward(d_x, p.gpu_grads(), {g_dln.at(), g_hidden.at(), nullptr, nullptr}, g_dout.at(),
                   g_saved.at(), g_x.at(), p.gpu_weights(), N, C, H);
  check_parity("ops mlp out", g_out.fetch(), out, tol);
  check_parity("ops mlp dx", in_place ? g_dout.fetch() : g_dx.fetch(), dx, tol);
  p.check("ops mlp", tol);
}

TEST_CASE("cuda ops attention sublayer matches the CPU at every precision", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  // bf16 runs on a GPU with bf16 tensor cores take the bf16 sublayer
  // (tensor/cuda/bf16_attention_block.h), the others the composed one. Shifted as the MLP's.
  const SublayerCase c = GENERATE(sublayer_cases());
  INFO(c);
  const auto [precision, tol, shift, in_place] = c;
  ds::tensor::cuda::CudaOps gpu(0, precision);
  Ops& cpu = ds::tensor::cpu_ops();
  // T = 70: a partial last tile, whose rows past T in qkv belong to the next batch row.
  const int B = 2, T = 70, C = 128, NH = 2, N = B * T;
  SublayerParams p(gpu, C, 3 * C, shift, 100);
  const Vec x = random_vec(size_t(N) * C, 106, -2.0f, 3.0f), dout = random_vec(size_t(N) * C, 107);

  const int64_t cpu_att = cpu.attention_saved_floats(B, T, C, NH);
  Vec out(x.size()), saved(size_t(cpu.attention_block_saved_floats(B, T, C, NH))), dx(x.size());
  Vec d_ln(x.size()), d_atty(x.size()), d_qkv(size_t(N) * 3 * C),
      d_att(static_cast<size_t>(cpu_att));
  cpu.attention_block_forward(out.data(), saved.data(), x.data(), p.weights(), 1e-5f, B, T, C, NH);
  cpu.attention_block_backward(dx.data(), p.host_grads(),
                               {d_ln.data(), d_atty.data(), d_qkv.data(), d_att.data()},
                               dout.data(), saved.data(), x.data(), p.weights(), B, T, C, NH);

  const int64_t gpu_saved = gpu.attention_block_saved_floats(B, T, C, NH);
  if (bf16_sublayer_expected(precision)) {
    CHECK(gpu_saved < cpu.attention_block_saved_floats(B, T, C, NH));
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();  // what the sublayer must overwrite
  Shifted g_x(gpu, x, shift), g_dout(gpu, dout, shift);
  Shifted g_saved(gpu, Vec(size_t(gpu_saved), nan), shift);
  Shifted g_dln(gpu, Vec(d_ln.size(), nan), shift), g_atty(gpu, Vec(d_atty.size(), nan), shift);
  Shifted g_qkv(gpu, Vec(d_qkv.size(), nan), shift);
  Shifted g_att(gpu, Vec(size_t(gpu.attention_saved_floats(B, T, C, NH)), nan), shift);
  Shifted g_out(gpu, Vec(out.size(), nan), shift), g_dx(gpu, Vec(dx.size(), nan), shift);
  gpu.attention_block_forward(g_out.at(), g_saved.at(), g_x.at(), p.gpu_weights(), 1e-5f, B, T, C,
                              NH);
  float* d_x = in_place ? g_dout.at() : g_dx.at();
  gpu.attention_block_backward(d_x, p.gpu_grads(),
                               {g_dln.at(), g_atty.at(), g_qkv.at(), g_att.at()}, g_dout.at(),
                               g_saved.at(), g_x.at(), p.gpu_weights(), B, T, C, NH);
  check_parity("ops attention sublayer out", g_out.fetch(), out, tol);
  check_parity("ops attention sublayer dx", in_place ? g_dout.fetch() : g_dx.fetch(), dx, tol);
  p.check("ops attention sublayer", tol);
}

// A block's backward as BlockLayer runs it: mlp_backward writes h's gradient into dx, and
// attention_block_backward takes that as its dout and writes x's over it, with and without an
// Ops::HandedGradient between the two. In bf16 runs the bf16 sublayers hand dx's bf16 copy and
// column sums on, so the attention sublayer reads neither from dx again: the results must be those
// of the plain calls (the attention projection's bias gradient is summed in another order). Shift
// 1 leaves every view off its 16-byte alignment, where the norm's row kernels, and so the handing
// on, do not apply.
TEST_CASE("cuda ops hand the MLP's dx on to the attention sublayer's backward", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  using ds::tensor::MatmulPrecision;
  const MatmulPrecision precision = GENERATE(MatmulPrecision::kFp32, MatmulPrecision::kBf16);
  const int shift = GENERATE(0, 1);
  INFO("precision " << static_cast<int>(precision) << " shift " << shift);
  ds::tensor::cuda::CudaOps gpu(0, precision);
  const int B = 2, T = 70, C = 128, NH = 2, N = B * T, H = 4 * C;
  const Vec x = random_vec(size_t(N) * C, 116, -2.0f, 3.0f), dy = random_vec(size_t(N) * C, 117);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Results {
    Vec dx;
    std::vector<Vec> attention, mlp;  // the sublayers' parameter gradients
    bool handed;
  };
  const auto gradients = [](SublayerParams& p) {
    std::vector<Vec> fetched;
    for (Shifted& g : p.device_grads) fetched.push_back(g.fetch());
    return fetched;
  };
  const auto run = [&](bool hand_on) {
    SublayerParams attention(gpu, C, 3 * C, shift, 120), mlp(gpu, C, H, shift, 130);
    Shifted g_x(gpu, x, shift), g_dy(gpu, dy, shift);
    Shifted g_h(gpu, Vec(x.size(), nan), shift), g_y(gpu, Vec(x.size(), nan), shift);
    Shifted g_attention_saved(gpu, Vec(size_t(gpu.attention_block_saved_floats(B, T, C, NH)), nan),
                              shift);
    Shifted g_mlp_saved(gpu, Vec(size_t(gpu.mlp_saved_floats(N, C, H)), nan), shift);
    gpu.attention_block_forward(g_h.at(), g_attention_saved.at(), g_x.at(), attention.gpu_weights(),
                                1e-5f, B, T, C, NH);
    gpu.mlp_forward(g_y.at(), g_mlp_saved.at(), g_h.at(), mlp.gpu_weights(), 1e-5f, N, C, H);

    Shifted g_dx(gpu, Vec(x.size(), nan), shift), g_dln(gpu, Vec(x.size(), nan), shift);
    Shifted g_hidden(gpu, Vec(size_t(N) * H, nan), shift), g_atty(gpu, Vec(x.size(), nan), shift);
    Shifted g_qkv(gpu, Vec(size_t(N) * 3 * C, nan), shift);
    Shifted g_att(gpu, Vec(size_t(gpu.attention_saved_floats(B, T, C, NH)), nan), shift);
    Ops::HandedGradient handed;
    gpu.mlp_backward(g_dx.at(), mlp.gpu_grads(),
                     {.d_ln = g_dln.at(),
                      .d_mid = g_hidden.at(),
                      .d_qkv = nullptr,
                      .d_att = nullptr,
                      .dx_handed = hand_on ? &handed : nullptr},
                     g_dy.at(), g_mlp_saved.at(), g_h.at(), mlp.gpu_weights(), N, C, H);
    gpu.attention_block_backward(g_dx.at(), attention.gpu_grads(),
                                 {.d_ln = g_dln.at(),
                                  .d_mid = g_atty.at(),
                                  .d_qkv = g_qkv.at(),
                                  .d_att = g_att.at(),
                                  .dout_handed = hand_on ? &handed : nullptr},
                                 g_dx.at(), g_attention_saved.at(), g_x.at(),
                                 attention.gpu_weights(), B, T, C, NH);
    return Results{g_dx.fetch(), gradients(attention), gradients(mlp), handed.dx != nullptr};
  };
  const Results plain = run(false), handed = run(true);
  const bool expected = bf16_sublayer_expected(precision) && shift == 0;
  CHECK_FALSE(plain.handed);
  CHECK(handed.handed == expected);
  // ... and taken by the attention sublayer (CudaOps counts it for the run's log).
  const std::string taken = "handed on to the attention sublayer: " + std::to_string(expected);
  CHECK(gpu.kernel_report().find(taken) != std::string::npos);
  // The same operations on the same values, bit for bit, but for the attention projection's bias
  // gradient: the MLP's norm backward sums dx's columns in its own order.
  CHECK(handed.dx == plain.dx);
  for (int i = 0; i < 6; ++i) {
    INFO("parameter " << i << " (ln_w, ln_b, w1, b1, w2, b2)");
    CHECK(handed.mlp[i] == plain.mlp[i]);
    if (i != 5) CHECK(handed.attention[i] == plain.attention[i]);
  }
  check_parity("handed on: attention db2", handed.attention[5], plain.attention[5], 1e-5);
}
