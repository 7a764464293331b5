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

// Each matmul precision with the parity threshold of a GPT-2 sublayer (MLP or attention) run at
// it: two products in a row, each with its inputs rounded at bf16.
Catch::Generators::GeneratorWrapper<std::pair<ds::tensor::MatmulPrecision, double>>
sublayer_precisions() {
  using ds::tensor::MatmulPrecision;
  return Catch::Generators::values<std::pair<MatmulPrecision, double>>(
      {{MatmulPrecision::kFp32, 1e-4},
       {MatmulPrecision::kTf32, 2e-3},
       {MatmulPrecision::kBf16, 2e-2}});
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
    cpu.sgd_step(params.data(), grads.data(), buffer.data(), n, 0.01, step, options);
    gpu.sgd_step(d_params.buffer.as<float>(), d_grads.buffer.as<float>(),
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

TEST_CASE("cuda ops MLP matches the CPU at every precision", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  // bf16 runs take the bf16 MLP (tensor/cuda/bf16_mlp.h), the others the composed one.
  const auto [precision, tol] = GENERATE(sublayer_precisions());
  // 0: every tensor 16-byte aligned; 1: the output, the residual, the input gradient, the
  // parameters' gradients, b_proj, the saved region and the scratch one float in (the bf16 MLP
  // stages or realigns them).
  const int shift = GENERATE(0, 1);
  INFO("precision " << static_cast<int>(precision) << " shift " << shift);
  ds::tensor::cuda::CudaOps gpu(0, precision);
  ds::tensor::Ops& cpu = ds::tensor::cpu_ops();
  const int N = 24, C = 32, H = 128;
  const Vec inp = random_vec(size_t(N) * C, 90), w_fc = random_vec(size_t(C) * H, 91, -0.3f, 0.3f);
  const Vec b_fc = random_vec(H, 92), w_proj = random_vec(size_t(H) * C, 93, -0.2f, 0.2f);
  const Vec b_proj = random_vec(C, 94), dout = random_vec(size_t(N) * C, 95);
  const Vec residual = random_vec(size_t(N) * C, 96);

  Vec out(size_t(N) * C), saved(size_t(cpu.mlp_saved_floats(N, C, H))), scratch(size_t(N) * H);
  Vec dinp(inp.size(), 0.25f), dw_fc(w_fc.size(), 0.5f), db_fc(H, 0.5f);
  Vec dw_proj(w_proj.size(), 0.5f), db_proj(C, 0.5f);
  cpu.mlp_forward(out.data(), saved.data(), inp.data(), residual.data(), w_fc.data(), b_fc.data(),
                  w_proj.data(), b_proj.data(), N, C, H);
  cpu.mlp_backward(dinp.data(), dw_fc.data(), db_fc.data(), dw_proj.data(), db_proj.data(),
                   scratch.data(), dout.data(), saved.data(), inp.data(), w_fc.data(),
                   w_proj.data(), N, C, H);

  Shifted d_inp(gpu, inp, 0), d_wfc(gpu, w_fc, 0), d_bfc(gpu, b_fc, 0);
  Shifted d_wproj(gpu, w_proj, 0), d_bproj(gpu, b_proj, shift), d_dout(gpu, dout, 0);
  Shifted d_residual(gpu, residual, shift);
  Shifted d_saved(gpu, Vec(size_t(gpu.mlp_saved_floats(N, C, H))), shift);
  Shifted d_scratch(gpu, Vec(scratch.size()), shift);
  Shifted d_out(gpu, Vec(out.size()), shift);
  Shifted d_dinp(gpu, Vec(inp.size(), 0.25f), shift);
  Shifted d_dwfc(gpu, Vec(w_fc.size(), 0.5f), shift), d_dbfc(gpu, Vec(H, 0.5f), shift);
  Shifted d_dwproj(gpu, Vec(w_proj.size(), 0.5f), shift);
  Shifted d_dbproj(gpu, Vec(C, 0.5f), shift);
  gpu.mlp_forward(d_out.at(), d_saved.at(), d_inp.at(), d_residual.at(), d_wfc.at(), d_bfc.at(),
                  d_wproj.at(), d_bproj.at(), N, C, H);
  gpu.mlp_backward(d_dinp.at(), d_dwfc.at(), d_dbfc.at(), d_dwproj.at(), d_dbproj.at(),
                   d_scratch.at(), d_dout.at(), d_saved.at(), d_inp.at(), d_wfc.at(), d_wproj.at(),
                   N, C, H);
  check_parity("ops mlp out", d_out.fetch(), out, tol);
  check_parity("ops mlp dinp", d_dinp.fetch(), dinp, tol);
  check_parity("ops mlp dw_fc", d_dwfc.fetch(), dw_fc, tol);
  check_parity("ops mlp db_fc", d_dbfc.fetch(), db_fc, tol);
  check_parity("ops mlp dw_proj", d_dwproj.fetch(), dw_proj, tol);
  check_parity("ops mlp db_proj", d_dbproj.fetch(), db_proj, tol);
}

TEST_CASE("cuda ops attention sublayer matches the CPU at every precision", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  using ds::tensor::MatmulPrecision;
  // bf16 runs on a GPU with bf16 tensor cores take the bf16 sublayer
  // (tensor/cuda/bf16_attention_block.h), the others the composed one.
  const auto [precision, tol] = GENERATE(sublayer_precisions());
  // 0: every tensor 16-byte aligned; 1: the output, the residual, the input gradient, the
  // parameters' gradients, b_proj, the saved region and the scratch one float in.
  const int shift = GENERATE(0, 1);
  INFO("precision " << static_cast<int>(precision) << " shift " << shift);
  ds::tensor::cuda::CudaOps gpu(0, precision);
  ds::tensor::Ops& cpu = ds::tensor::cpu_ops();
  // T = 70: a partial last tile, whose rows past T in qkv belong to the next batch row.
  const int B = 2, T = 70, C = 128, NH = 2, N = B * T;
  const Vec inp = random_vec(size_t(N) * C, 100);
  const Vec w_qkv = random_vec(size_t(C) * 3 * C, 101, -0.2f, 0.2f), b_qkv = random_vec(3 * C, 102);
  const Vec w_proj = random_vec(size_t(C) * C, 103, -0.2f, 0.2f), b_proj = random_vec(C, 104);
  const Vec dout = random_vec(size_t(N) * C, 105), residual = random_vec(size_t(N) * C, 106);

  const int64_t cpu_att = cpu.attention_saved_floats(B, T, C, NH);
  Vec out(size_t(N) * C), saved(size_t(cpu.attention_block_saved_floats(B, T, C, NH)));
  Vec d_atty(size_t(N) * C), d_qkv(size_t(N) * 3 * C), d_att(static_cast<size_t>(cpu_att));
  Vec dinp(inp.size(), 0.25f), dw_qkv(w_qkv.size(), 0.5f), db_qkv(b_qkv.size(), 0.5f);
  Vec dw_proj(w_proj.size(), 0.5f), db_proj(C, 0.5f);
  cpu.attention_block_forward(out.data(), saved.data(), inp.data(), residual.data(), w_qkv.data(),
                              b_qkv.data(), w_proj.data(), b_proj.data(), B, T, C, NH);
  cpu.attention_block_backward(dinp.data(), dw_qkv.data(), db_qkv.data(), dw_proj.data(),
                               db_proj.data(), {d_atty.data(), d_qkv.data(), d_att.data()},
                               dout.data(), saved.data(), inp.data(), w_qkv.data(), w_proj.data(),
                               B, T, C, NH);

  const int64_t gpu_saved = gpu.attention_block_saved_floats(B, T, C, NH);
  int major = 0;
  REQUIRE(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess);
  if (precision == MatmulPrecision::kBf16 && major >= 8) {
    CHECK(gpu_saved < cpu.attention_block_saved_floats(B, T, C, NH));  // bf16 qkv and output
  }
  Shifted d_inp(gpu, inp, 0), d_wqkv(gpu, w_qkv, 0), d_bqkv(gpu, b_qkv, 0);
  Shifted d_wproj(gpu, w_proj, 0), d_bproj(gpu, b_proj, shift), d_dout(gpu, dout, 0);
  Shifted d_residual(gpu, residual, shift);
  const float nan = std::numeric_limits<float>::quiet_NaN();  // what the sublayer must overwrite
  Shifted d_saved(gpu, Vec(size_t(gpu_saved), nan), shift);
  Shifted s_atty(gpu, Vec(d_atty.size(), nan), shift), s_qkv(gpu, Vec(d_qkv.size(), nan), shift);
  Shifted s_att(gpu, Vec(size_t(gpu.attention_saved_floats(B, T, C, NH)), nan), shift);
  Shifted d_out(gpu, Vec(out.size(), nan), shift);
  Shifted d_dinp(gpu, Vec(inp.size(), 0.25f), shift);
  Shifted d_dwqkv(gpu, Vec(w_qkv.size(), 0.5f), shift),
      d_dbqkv(gpu, Vec(b_qkv.size(), 0.5f), shift);
  Shifted d_dwproj(gpu, Vec(w_proj.size(), 0.5f), shift), d_dbproj(gpu, Vec(C, 0.5f), shift);
  gpu.attention_block_forward(d_out.at(), d_saved.at(), d_inp.at(), d_residual.at(), d_wqkv.at(),
                              d_bqkv.at(), d_wproj.at(), d_bproj.at(), B, T, C, NH);
  gpu.attention_block_backward(d_dinp.at(), d_dwqkv.at(), d_dbqkv.at(), d_dwproj.at(),
                               d_dbproj.at(), {s_atty.at(), s_qkv.at(), s_att.at()}, d_dout.at(),
                               d_saved.at(), d_inp.at(), d_wqkv.at(), d_wproj.at(), B, T, C, NH);
  check_parity("ops attention sublayer out", d_out.fetch(), out, tol);
  check_parity("ops attention sublayer dinp", d_dinp.fetch(), dinp, tol);
  check_parity("ops attention sublayer dw_qkv", d_dwqkv.fetch(), dw_qkv, tol);
  check_parity("ops attention sublayer db_qkv", d_dbqkv.fetch(), db_qkv, tol);
  check_parity("ops attention sublayer dw_proj", d_dwproj.fetch(), dw_proj, tol);
  check_parity("ops attention sublayer db_proj", d_dbproj.fetch(), db_proj, tol);
}
