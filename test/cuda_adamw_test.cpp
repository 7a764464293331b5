// cuda::adam_step against optim::Adam, the CPU optimizer it mirrors: three steps over an odd
// number of elements, AdamW (decoupled decay) and Adam with L2 decay. The kernel rounds each
// operation as the CPU loop does, so the results are expected to be bitwise equal; the stated
// threshold is max|gpu-cpu| / max|cpu| <= 1e-6 (an FMA or a reordered product would still
// pass it), and the number of differing elements is printed.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cuda_test_helpers.h"
#include "optim/optimizer.h"
#include "tensor/cpu/optimizer_kernels.h"
#include "tensor/cuda/adamw.h"
#include "util/error.h"

using namespace ds_cuda_test;

namespace {

size_t bitwise_differences(const Vec& a, const Vec& b) {
  size_t count = 0;
  for (size_t i = 0; i < a.size(); ++i) count += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return count;
}

}  // namespace

TEST_CASE("cuda adam_step matches optim::Adam", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const bool decoupled = GENERATE(true, false);
  INFO("decoupled weight decay: " << decoupled);
  const int64_t n = 1237;
  ds::optim::AdamOptions options;
  options.beta1 = 0.9;
  options.beta2 = 0.95;
  options.eps = 1e-8;
  options.weight_decay = 0.1;
  options.decoupled_weight_decay = decoupled;
  ds::optim::Adam adam(n, options);

  Vec params = random_vec(n, 1);
  auto d_params = to_device(params, gpu);
  auto d_grads = cuda::DeviceBuffer::floats(n);
  auto d_m = cuda::DeviceBuffer::floats(n);  // zeroed, as optim::Adam's state starts
  auto d_v = cuda::DeviceBuffer::floats(n);
  for (int64_t step = 1; step <= 3; ++step) {
    const Vec grads = random_vec(n, 100 + uint32_t(step), -0.1f, 0.1f);
    const double lr = 1e-3 * double(step);
    d_grads.upload(grads.data(), sizeof(float) * n, gpu.s());
    adam.step(params.data(), grads.data(), n, lr, step);
    cuda::adam_step(d_params.as<float>(), ds::tensor::StepIo{d_grads.as<float>()}, d_m.as<float>(),
                    d_v.as<float>(), n, lr, step, options, gpu.s());
  }
  const Vec gpu_params = to_host(d_params, gpu);
  const Vec gpu_m = to_host(d_m, gpu);
  const Vec gpu_v = to_host(d_v, gpu);
  const Vec cpu_m(adam.exp_avg().begin(), adam.exp_avg().end());
  const Vec cpu_v(adam.exp_avg_sq().begin(), adam.exp_avg_sq().end());
  INFO("bitwise differences: params " << bitwise_differences(gpu_params, params) << ", exp_avg "
                                      << bitwise_differences(gpu_m, cpu_m) << ", exp_avg_sq "
                                      << bitwise_differences(gpu_v, cpu_v));
  check_parity("params", gpu_params, params, 1e-6);
  check_parity("exp_avg", gpu_m, cpu_m, 1e-6);
  check_parity("exp_avg_sq", gpu_v, cpu_v, 1e-6);
}

// Mixed precision's update: the gradient read from bf16 and unscaled on the way, the bf16 copy of
// the parameters written in the same pass; the GPU against the CPU loop, bit for bit.
TEST_CASE("cuda adam_step reads a bf16 gradient and writes bf16 parameters as the CPU does",
          "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const int64_t n = 1237;
  ds::tensor::AdamOptions options;
  options.weight_decay = 0.1;
  Vec params = random_vec(n, 1), m(n, 0.0f), v(n, 0.0f);
  auto d_params = to_device(params, gpu), d_m = to_device(m, gpu), d_v = to_device(v, gpu);
  std::vector<uint16_t> params16(n), grads16(n);
  auto d_params16 = to_device(params16, gpu);
  for (int64_t step = 1; step <= 3; ++step) {
    const Vec grads = random_vec(n, 100 + uint32_t(step), -0.1f, 0.1f);
    for (int64_t i = 0; i < n; ++i) grads16[i] = ds::tensor::f32_to_bf16(grads[i]);
    auto d_grads16 = to_device(grads16, gpu);
    const float scale = 0.25f;
    ds::tensor::cpu::adam_step(params.data(),
                               {grads16.data(), ds::tensor::DType::kBF16, scale, params16.data()},
                               m.data(), v.data(), n, 1e-3, step, options);
    cuda::adam_step(d_params.as<float>(),
                    {d_grads16.data(), ds::tensor::DType::kBF16, scale, d_params16.data()},
                    d_m.as<float>(), d_v.as<float>(), n, 1e-3, step, options, gpu.s());
  }
  CHECK(bitwise_differences(to_host(d_params, gpu), params) == 0);
  CHECK(bitwise_differences(to_host(d_m, gpu), m) == 0);
  CHECK(bitwise_differences(to_host(d_v, gpu), v) == 0);
  CHECK(to_host<uint16_t>(d_params16, size_t(n), gpu) == params16);
}

TEST_CASE("cuda adam_step rejects step 0 before touching the device", "[cuda]") {
  CHECK_THROWS_AS(cuda::adam_step(nullptr, ds::tensor::StepIo{}, nullptr, nullptr, 10, 1e-3, 0,
                                  ds::tensor::AdamOptions{}, nullptr),
                  ds::Error);
}
