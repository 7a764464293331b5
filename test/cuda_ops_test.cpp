// The engine-side ops of tensor::Ops (casts between storage dtypes, scaled conversions, the
// sum of squares, the SGD update) on CudaOps against cpu_ops(), on the same inputs. Casts and
// SGD round every operation as the CPU does: bitwise expected, threshold 0 for the casts and
// 1e-6 for SGD; the sum of squares is summed in another order: 1e-12 relative. And the model's
// matmuls as CudaOps runs them (cuBLASLt with fused epilogues, or cuBLAS for unaligned
// operands) at each MatmulPrecision: 1e-4 fp32, 2e-3 TF32, 1e-2 bf16-rounded inputs.
#include "tensor/cuda/cuda_ops.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
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
  const auto mirror = [&](const Vec& v) {
    Vec padded(v.size() + 1, 0.0f);
    std::copy(v.begin(), v.end(), padded.begin() + shift);
    return Mirror(gpu, padded.data(), sizeof(float) * padded.size());
  };
  const auto fetch = [&](Mirror& m, size_t n) {
    const std::vector<char> raw = m.fetch();
    Vec out(n);
    std::memcpy(out.data(), raw.data() + sizeof(float) * shift, sizeof(float) * n);
    return out;
  };
  const auto at = [&](Mirror& m) { return m.buffer.as<float>() + shift; };

  // Forward: pre = inp·W_fc + b_fc, act = GELU(pre), y = act·W_proj + b_proj.
  Vec pre(size_t(N) * H), act(pre.size()), y(size_t(N) * C);
  cpu.matmul_gelu_forward(act.data(), pre.data(), inp.data(), w_fc.data(), b_fc.data(), N, C, H,
                          WeightLayout::kInOut);
  cpu.matmul_forward(y.data(), act.data(), w_proj.data(), b_proj.data(), N, H, C,
                     WeightLayout::kInOut);
  Mirror d_inp = mirror(inp), d_wfc = mirror(w_fc), d_bfc = mirror(b_fc), d_wproj = mirror(w_proj),
         d_bproj = mirror(b_proj), d_pre = mirror(Vec(pre.size())), d_act = mirror(Vec(act.size())),
         d_y = mirror(Vec(y.size()));
  gpu.matmul_gelu_forward(at(d_act), at(d_pre), at(d_inp), at(d_wfc), at(d_bfc), N, C, H,
                          WeightLayout::kInOut);
  gpu.matmul_forward(at(d_y), at(d_act), at(d_wproj), at(d_bproj), N, H, C, WeightLayout::kInOut);
  check_parity("ops matmul_gelu_forward pre", fetch(d_pre, pre.size()), pre, tol);
  check_parity("ops matmul_gelu_forward act", fetch(d_act, act.size()), act, std::max(tol, 1e-3));
  check_parity("ops matmul_forward", fetch(d_y, y.size()), y, tol);

  // Backward: through the projection and the GELU in one op, then the expansion.
  Vec dpre(pre.size()), dw_proj(w_proj.size(), 0.5f), db_proj(C, 0.5f);
  Vec dinp(inp.size(), 0.25f), dw_fc(w_fc.size(), 0.5f), db_fc(H, 0.5f);
  cpu.matmul_gelu_backward(dpre.data(), dw_proj.data(), db_proj.data(), dout.data(), act.data(),
                           w_proj.data(), pre.data(), N, H, C, WeightLayout::kInOut);
  cpu.matmul_backward(dinp.data(), dw_fc.data(), db_fc.data(), dpre.data(), inp.data(), w_fc.data(),
                      N, C, H, WeightLayout::kInOut);
  Mirror d_dout = mirror(dout), d_dpre = mirror(Vec(dpre.size(), 9.0f)),
         d_dwproj = mirror(Vec(w_proj.size(), 0.5f)), d_dbproj = mirror(Vec(C, 0.5f)),
         d_dinp = mirror(Vec(inp.size(), 0.25f)), d_dwfc = mirror(Vec(w_fc.size(), 0.5f)),
         d_dbfc = mirror(Vec(H, 0.5f));
  gpu.matmul_gelu_backward(at(d_dpre), at(d_dwproj), at(d_dbproj), at(d_dout), at(d_act),
                           at(d_wproj), at(d_pre), N, H, C, WeightLayout::kInOut);
  gpu.matmul_backward(at(d_dinp), at(d_dwfc), at(d_dbfc), at(d_dpre), at(d_inp), at(d_wfc), N, C, H,
                      WeightLayout::kInOut);
  const double grad_tol = std::max(tol, 1e-3);  // through gelu', maybe the hardware tanh
  check_parity("ops matmul_gelu_backward dpre", fetch(d_dpre, dpre.size()), dpre, grad_tol);
  check_parity("ops matmul_gelu_backward dweight", fetch(d_dwproj, dw_proj.size()), dw_proj, tol);
  check_parity("ops matmul_gelu_backward dbias", fetch(d_dbproj, db_proj.size()), db_proj, tol);
  check_parity("ops matmul_backward dinp", fetch(d_dinp, dinp.size()), dinp, grad_tol);
  check_parity("ops matmul_backward dweight", fetch(d_dwfc, dw_fc.size()), dw_fc, grad_tol);
  check_parity("ops matmul_backward dbias", fetch(d_dbfc, db_fc.size()), db_fc, grad_tol);
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
  // An odd vocabulary, so that the GPU pads its rows; one position without a target.
  const int N = 24, C = 32, V = 1001;
  const Vec inp = random_vec(size_t(N) * C, 80), head = random_vec(size_t(V) * C, 81, -0.5f, 0.5f);
  std::vector<int32_t> targets(N);
  for (int n = 0; n < N; ++n) targets[n] = (n * 37 + 5) % V;
  targets[3] = ds::tensor::cpu::kIgnoreTarget;
  const float dloss = 1.0f / float(N - 1);

  Vec losses(N), scratch(size_t(cpu.classifier_scratch_floats(N, V)));
  Vec dinp(inp.size(), 0.25f), dhead(head.size(), 0.5f);
  cpu.classifier_forward(losses.data(), scratch.data(), inp.data(), head.data(), targets.data(),
                         dloss, N, C, V);
  cpu.classifier_backward(dinp.data(), dhead.data(), scratch.data(), inp.data(), head.data(), N, C,
                          V);

  Mirror d_inp(gpu, inp.data(), sizeof(float) * inp.size());
  Mirror d_head(gpu, head.data(), sizeof(float) * head.size());
  Mirror d_targets(gpu, targets.data(), sizeof(int32_t) * targets.size());
  const Vec zeros(size_t(gpu.classifier_scratch_floats(N, V)));
  Mirror d_scratch(gpu, zeros.data(), sizeof(float) * zeros.size());
  Mirror d_losses(gpu, losses.data(), sizeof(float) * N);
  const Vec dinp0(inp.size(), 0.25f), dhead0(head.size(), 0.5f);
  Mirror d_dinp(gpu, dinp0.data(), sizeof(float) * dinp0.size());
  Mirror d_dhead(gpu, dhead0.data(), sizeof(float) * dhead0.size());
  gpu.classifier_forward(d_losses.buffer.as<float>(), d_scratch.buffer.as<float>(),
                         d_inp.buffer.as<float>(), d_head.buffer.as<float>(),
                         d_targets.buffer.as<int32_t>(), dloss, N, C, V);
  gpu.classifier_backward(d_dinp.buffer.as<float>(), d_dhead.buffer.as<float>(),
                          d_scratch.buffer.as<float>(), d_inp.buffer.as<float>(),
                          d_head.buffer.as<float>(), N, C, V);
  const auto floats = [](Mirror& m, size_t n) {
    const std::vector<char> raw = m.fetch();
    Vec out(n);
    std::memcpy(out.data(), raw.data(), sizeof(float) * n);
    return out;
  };
  const Vec got_losses = floats(d_losses, N);
  check_parity("ops classifier losses", got_losses, losses, tol);
  CHECK(got_losses[3] == 0.0f);
  check_parity("ops classifier dinp", floats(d_dinp, dinp.size()), dinp, tol);
  check_parity("ops classifier dhead", floats(d_dhead, dhead.size()), dhead, tol);
}

TEST_CASE("cuda ops MLP matches the CPU at every precision", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  using ds::tensor::MatmulPrecision;
  // bf16 runs take the bf16 MLP (tensor/cuda/bf16_mlp.h), the others the composed one.
  const auto [precision, tol] =
      GENERATE(std::pair{MatmulPrecision::kFp32, 1e-4}, std::pair{MatmulPrecision::kTf32, 2e-3},
               std::pair{MatmulPrecision::kBf16, 2e-2});
  // 0: every tensor 16-byte aligned; 1: the output, the input gradient, the parameters'
  // gradients, b_proj, the saved region and the scratch one float in (the bf16 MLP stages or
  // realigns them).
  const int shift = GENERATE(0, 1);
  INFO("precision " << static_cast<int>(precision) << " shift " << shift);
  ds::tensor::cuda::CudaOps gpu(0, precision);
  ds::tensor::Ops& cpu = ds::tensor::cpu_ops();
  const int N = 24, C = 32, H = 128;
  const Vec inp = random_vec(size_t(N) * C, 90), w_fc = random_vec(size_t(C) * H, 91, -0.3f, 0.3f);
  const Vec b_fc = random_vec(H, 92), w_proj = random_vec(size_t(H) * C, 93, -0.2f, 0.2f);
  const Vec b_proj = random_vec(C, 94), dout = random_vec(size_t(N) * C, 95);

  Vec out(size_t(N) * C), saved(size_t(cpu.mlp_saved_floats(N, H))), scratch(size_t(N) * H);
  Vec dinp(inp.size(), 0.25f), dw_fc(w_fc.size(), 0.5f), db_fc(H, 0.5f);
  Vec dw_proj(w_proj.size(), 0.5f), db_proj(C, 0.5f);
  cpu.mlp_forward(out.data(), saved.data(), inp.data(), w_fc.data(), b_fc.data(), w_proj.data(),
                  b_proj.data(), N, C, H);
  cpu.mlp_backward(dinp.data(), dw_fc.data(), db_fc.data(), dw_proj.data(), db_proj.data(),
                   scratch.data(), dout.data(), saved.data(), inp.data(), w_fc.data(),
                   w_proj.data(), N, C, H);

  const auto mirror = [&](const Vec& v, int offset) {
    Vec padded(v.size() + 1, 0.0f);
    std::copy(v.begin(), v.end(), padded.begin() + offset);
    return Mirror(gpu, padded.data(), sizeof(float) * padded.size());
  };
  const auto fetch = [&](Mirror& m, size_t n, int offset) {
    const std::vector<char> raw = m.fetch();
    Vec values(n);
    std::memcpy(values.data(), raw.data() + sizeof(float) * offset, sizeof(float) * n);
    return values;
  };
  Mirror d_inp = mirror(inp, 0), d_wfc = mirror(w_fc, 0), d_bfc = mirror(b_fc, 0);
  Mirror d_wproj = mirror(w_proj, 0), d_bproj = mirror(b_proj, shift), d_dout = mirror(dout, 0);
  Mirror d_saved = mirror(Vec(saved.size()), shift);
  Mirror d_scratch = mirror(Vec(scratch.size()), shift);
  Mirror d_out = mirror(Vec(out.size()), shift);
  Mirror d_dinp = mirror(Vec(inp.size(), 0.25f), shift);
  Mirror d_dwfc = mirror(Vec(w_fc.size(), 0.5f), shift), d_dbfc = mirror(Vec(H, 0.5f), shift);
  Mirror d_dwproj = mirror(Vec(w_proj.size(), 0.5f), shift);
  Mirror d_dbproj = mirror(Vec(C, 0.5f), shift);
  const auto at = [](Mirror& m, int offset) { return m.buffer.as<float>() + offset; };
  gpu.mlp_forward(at(d_out, shift), at(d_saved, shift), at(d_inp, 0), at(d_wfc, 0), at(d_bfc, 0),
                  at(d_wproj, 0), at(d_bproj, shift), N, C, H);
  gpu.mlp_backward(at(d_dinp, shift), at(d_dwfc, shift), at(d_dbfc, shift), at(d_dwproj, shift),
                   at(d_dbproj, shift), at(d_scratch, shift), at(d_dout, 0), at(d_saved, shift),
                   at(d_inp, 0), at(d_wfc, 0), at(d_wproj, 0), N, C, H);
  check_parity("ops mlp out", fetch(d_out, out.size(), shift), out, tol);
  check_parity("ops mlp dinp", fetch(d_dinp, dinp.size(), shift), dinp, tol);
  check_parity("ops mlp dw_fc", fetch(d_dwfc, dw_fc.size(), shift), dw_fc, tol);
  check_parity("ops mlp db_fc", fetch(d_dbfc, db_fc.size(), shift), db_fc, tol);
  check_parity("ops mlp dw_proj", fetch(d_dwproj, dw_proj.size(), shift), dw_proj, tol);
  check_parity("ops mlp db_proj", fetch(d_dbproj, db_proj.size(), shift), db_proj, tol);
}
