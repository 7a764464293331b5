// The ZeRO engine with its model and states on a GPU (tensor::cuda::CudaOps) against the same
// engine on the CPU: every stage, fp32 and bf16 storage, 6 steps; and ZeRO-Offload (states in
// host memory, the model on the GPU). fp32 within 1e-5 relative (the GPU sums in other
// orders); bf16 within 1e-2 (a different fp32 rounding can flip a bf16 rounding, 8 bits of
// mantissa). Skipped without a GPU.
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "cuda_test_helpers.h"
#include "engine_run_helpers.h"
#include "tensor/memory.h"

using namespace ds;

namespace {

// The losses of 6 steps of `cfg` on `device`.
std::vector<double> losses(const config::TrainConfig& cfg, tensor::Device device) {
  std::vector<double> out;
  for (const zero::StepStats& s : ds::testing::EngineRun(cfg, device).train(0, 6)) {
    out.push_back(s.loss);
  }
  return out;
}

}  // namespace

TEST_CASE("on the GPU every ZeRO stage follows the CPU's losses", "[cuda]") {
  if (!ds_cuda_test::gpu_available()) return;
  for (const auto& [precision, tolerance] :
       {std::pair<std::string, double>{"", 1e-5}, {"bf16: {enabled: true},", 1e-2}}) {
    for (int stage : {0, 1, 2, 3}) {
      INFO("stage " << stage << " " << (precision.empty() ? "fp32" : precision));
      const auto cfg = ds::testing::make_config(stage, precision);
      const auto cpu = losses(cfg, tensor::Device::cpu());
      const auto device = losses(cfg, tensor::Device::cuda(0));
      for (size_t i = 0; i < cpu.size(); ++i) {
        INFO("step " << i + 1 << ": " << device[i] << " on cuda:0, " << cpu[i] << " on the CPU");
        CHECK(device[i] == Approx(cpu[i]).epsilon(tolerance));
      }
      CHECK(device.back() < device.front());
    }
  }
  for (int stage : {2, 3}) {
    INFO("stage " << stage << " with offload_optimizer: cpu");
    const auto cfg = ds::testing::make_config(stage, "", ", offload_optimizer: {device: cpu}");
    const auto cpu = losses(cfg, tensor::Device::cpu());
    const auto device = losses(cfg, tensor::Device::cuda(0));
    for (size_t i = 0; i < cpu.size(); ++i) CHECK(device[i] == Approx(cpu[i]).epsilon(1e-5));
  }
  // Every device buffer went back with its engine and model.
  CHECK(tensor::MemoryTracker::device_instance().total() == 0);
}
