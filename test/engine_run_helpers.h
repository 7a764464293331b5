// A small model and its ZeRO engine on a chosen device, trained on deterministic batches:
// what the device tests (zero_device_test on the emulated device, cuda_engine_test on a GPU)
// compare against the same engine on the CPU.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/train_config.h"
#include "model/init.h"
#include "tensor/ops.h"
#include "zero/engine.h"

namespace ds::testing {

// 2 blocks of 32, micro-batch 2 x 16, 2 accumulation steps, clipping 1.0, AdamW.
// `precision` adds ds_config keys ("bf16: {enabled: true},"), `zero` zero_optimization keys.
inline config::TrainConfig make_config(int stage, const std::string& precision,
                                       const std::string& zero = "") {
  const std::string yaml =
      "model: {n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 64, block_size: 16}\n"
      "data: {train: unused.txt}\n"
      "deepspeed: {train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 2,\n"
      "  gradient_clipping: 1.0, " +
      precision + " zero_optimization: {stage: " + std::to_string(stage) + zero +
      "},\n"
      "  optimizer: {type: AdamW, params: {lr: 0.01, weight_decay: 0.1}}}\n";
  return config::parse_train_config(config::parse_document(yaml, "t.yaml", "", false), 1);
}

inline void fill_batch(int step, int micro, int32_t* in, int32_t* tgt) {
  for (int i = 0; i < 2 * 16; ++i) {
    const int v = (step * 131 + micro * 17 + i * 7 + (i * i) % 11) % 64;
    in[i] = v;
    tgt[i] = (v * 5 + 3) % 64;
  }
}

// A model and its engine on `device`, from the same initial weights every time.
struct EngineRun {
  EngineRun(const config::TrainConfig& cfg, tensor::Device device)
      : ops(tensor::make_ops(device)), gpt(cfg.model, *ops) {
    std::vector<float> initial(static_cast<size_t>(gpt.layout().total));
    model::init_weights(gpt.layout(), cfg.model, 5, initial.data());
    engine = std::make_unique<zero::Engine>(cfg, gpt, initial.data(),
                                            std::make_unique<zero::SingleRankComm>());
  }
  std::vector<zero::StepStats> train(int first, int steps) {
    std::vector<zero::StepStats> out;
    for (int s = first; s < first + steps; ++s) {
      out.push_back(
          engine->train_step([s](int m, int32_t* in, int32_t* t) { fill_batch(s, m, in, t); }));
    }
    return out;
  }
  std::unique_ptr<tensor::Ops> ops;
  model::Gpt gpt;
  std::unique_ptr<zero::Engine> engine;
};

}  // namespace ds::testing
