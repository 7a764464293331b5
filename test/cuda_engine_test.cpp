// The ZeRO engine with its model on a GPU (tensor::cuda::CudaOps, the model states in host
// memory: model/device_layer_buffers.h) against the same engine on the CPU: every stage, fp32
// and bf16 storage, 6 steps. fp32 within 1e-5 relative (the GPU sums in other orders); bf16
// within 1e-2 (a different fp32 rounding can flip a bf16 rounding, 8 bits of mantissa).
// Skipped without a GPU.
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "config/train_config.h"
#include "cuda_test_helpers.h"
#include "model/init.h"
#include "tensor/cuda/cuda_ops.h"
#include "tensor/memory.h"
#include "zero/engine.h"

using namespace ds;

namespace {

config::TrainConfig make_config(int stage, const std::string& precision) {
  const std::string yaml =
      "model: {n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 64, block_size: 16}\n"
      "data: {train: unused.txt}\n"
      "deepspeed: {train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 2,\n"
      "  gradient_clipping: 1.0, " +
      precision + " zero_optimization: {stage: " + std::to_string(stage) +
      "},\n"
      "  optimizer: {type: AdamW, params: {lr: 0.01, weight_decay: 0.1}}}\n";
  return config::parse_train_config(config::parse_document(yaml, "t.yaml", "", false), 1);
}

void fill(int step, int micro, int32_t* in, int32_t* tgt) {
  for (int i = 0; i < 2 * 16; ++i) {
    const int v = (step * 131 + micro * 17 + i * 7 + (i * i) % 11) % 64;
    in[i] = v;
    tgt[i] = (v * 5 + 3) % 64;
  }
}

std::vector<double> train(const config::TrainConfig& cfg, tensor::Ops& ops, int steps) {
  model::Gpt gpt(cfg.model, ops);
  std::vector<float> initial(static_cast<size_t>(gpt.layout().total));
  model::init_weights(gpt.layout(), cfg.model, 5, initial.data());
  zero::Engine engine(cfg, gpt, initial.data(), std::make_unique<zero::SingleRankComm>());
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    losses.push_back(
        engine.train_step([s](int m, int32_t* in, int32_t* t) { fill(s, m, in, t); }).loss);
  }
  return losses;
}

}  // namespace

TEST_CASE("on the GPU every ZeRO stage follows the CPU's losses", "[cuda]") {
  if (!ds_cuda_test::gpu_available()) return;
  tensor::cuda::CudaOps gpu(0);
  for (const auto& [precision, tolerance] :
       {std::pair<std::string, double>{"", 1e-5}, {"bf16: {enabled: true},", 1e-2}}) {
    for (int stage : {0, 1, 2, 3}) {
      INFO("stage " << stage << " " << (precision.empty() ? "fp32" : precision));
      const auto cfg = make_config(stage, precision);
      const auto cpu = train(cfg, tensor::cpu_ops(), 6);
      const auto device = train(cfg, gpu, 6);
      for (size_t i = 0; i < cpu.size(); ++i) {
        INFO("step " << i + 1 << ": " << device[i] << " on cuda:0, " << cpu[i] << " on the CPU");
        CHECK(device[i] == Approx(cpu[i]).epsilon(tolerance));
      }
      CHECK(device.back() < device.front());
    }
  }
  // Every device buffer went back with its engine and model.
  CHECK(tensor::MemoryTracker::device_instance().total() == 0);
}
