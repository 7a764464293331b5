// The engine-side ops of tensor::Ops (casts between storage dtypes, scaled conversions, the
// sum of squares, the SGD update) on CudaOps against cpu_ops(), on the same inputs. Casts and
// SGD round every operation as the CPU does: bitwise expected, threshold 0 for the casts and
// 1e-6 for SGD; the sum of squares is summed in another order: 1e-12 relative.
#include "tensor/cuda/cuda_ops.h"

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
