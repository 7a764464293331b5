// The ZeRO engine on one rank: every stage trains the same numbers, mixed precision
// stays close to fp32, memory follows the ZeRO formulas, and the fp16 loss scale
// follows DeepSpeed's rules when gradients overflow.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "config/train_config.h"
#include "model/init.h"
#include "util/error.h"
#include "zero/engine.h"

using namespace ds;

namespace {

config::TrainConfig make_config(int stage, const std::string& precision,
                                const std::string& extra = "", const std::string& zero = "") {
  const std::string yaml =
      "model: {n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 64, block_size: 16}\n"
      "data: {train: unused.txt}\n"
      "deepspeed: {train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 2,\n"
      "  gradient_clipping: 1.0, " +
      precision + extra + " zero_optimization: {stage: " + std::to_string(stage) + zero +
      "},\n"
      "  optimizer: {type: AdamW, params: {lr: 0.01, weight_decay: 0.1}}}\n";
  return config::parse_train_config(config::parse_document(yaml, "t.yaml", "", false), 1);
}

// Deterministic token windows: micro-step m of step s.
struct Batches {
  int step = 0;
  void operator()(int micro, int32_t* in, int32_t* tgt) const {
    for (int i = 0; i < 2 * 16; ++i) {
      const int v = (step * 131 + micro * 17 + i * 7 + (i * i) % 11) % 64;
      in[i] = v;
      tgt[i] = (v * 5 + 3) % 64;
    }
  }
};

std::vector<zero::StepStats> train(const config::TrainConfig& cfg, int steps,
                                   zero::MemoryReport* report = nullptr) {
  model::Gpt gpt(cfg.model);
  std::vector<float> initial(static_cast<size_t>(gpt.layout().total));
  model::init_weights(gpt.layout(), cfg.model, 5, initial.data());
  zero::Engine engine(cfg, gpt, initial.data(), std::make_unique<zero::SingleRankComm>());
  std::vector<zero::StepStats> out;
  for (int s = 0; s < steps; ++s) out.push_back(engine.train_step(Batches{s}));
  if (report) *report = engine.memory_report();
  return out;
}

}  // namespace

TEST_CASE("on one rank every ZeRO stage gives the same fp32 losses", "[zero][engine]") {
  // Stages 0 and 1 accumulate micro-steps inside the matmul (beta = 1); stages 2 and 3
  // reduce each micro-step's gradient and then add it, so they round differently in the
  // last bits: 1e-6 relative after 6 steps.
  const auto reference = train(make_config(0, ""), 6);
  for (int stage : {1, 2, 3}) {
    INFO("stage " << stage);
    const auto run = train(make_config(stage, ""), 6);
    for (size_t i = 0; i < run.size(); ++i) {
      if (stage == 1) CHECK(run[i].loss == reference[i].loss);
      CHECK(run[i].loss == Approx(reference[i].loss).epsilon(1e-6));
      CHECK(run[i].grad_norm == Approx(reference[i].grad_norm).epsilon(1e-6));
    }
  }
  CHECK(reference.back().loss < reference.front().loss);
}

TEST_CASE("on one rank every ZeRO stage gives the same bf16 losses", "[zero][engine]") {
  // The same roundings at every stage: each micro-step's fp32 gradient is added to the
  // bf16 storage once, whether directly (stages 0-1) or as the one rank's piece (2-3).
  // (On a bf16 wire, stages 2-3 would round each micro-step's gradient once more.)
  const std::string bf16 = "bf16: {enabled: true}, communication_data_type: fp32,";
  const std::string whole = ", stage3_param_persistence_threshold: 0";
  const auto reference = train(make_config(0, bf16), 6);
  for (int stage : {1, 2, 3}) {
    INFO("stage " << stage);
    const auto run = train(make_config(stage, bf16, "", stage == 3 ? whole : ""), 6);
    for (size_t i = 0; i < run.size(); ++i) {
      CHECK(run[i].loss == Approx(reference[i].loss).epsilon(1e-6));
      CHECK(run[i].grad_norm == Approx(reference[i].grad_norm).epsilon(1e-6));
    }
  }
}

TEST_CASE("bf16 and fp16 storage train close to fp32", "[zero][engine]") {
  const auto fp32 = train(make_config(2, ""), 6);
  for (const char* precision : {"bf16: {enabled: true},", "fp16: {enabled: true},"}) {
    INFO(precision);
    const auto run = train(make_config(2, precision), 6);
    for (size_t i = 0; i < run.size(); ++i) {
      CHECK_FALSE(run[i].skipped);
      CHECK(std::fabs(run[i].loss - fp32[i].loss) < 0.02 * fp32[i].loss);
    }
  }
}

TEST_CASE("model-state bytes follow the ZeRO formulas", "[zero][engine][memory]") {
  for (int stage : {0, 1, 2, 3}) {
    zero::MemoryReport r;
    // Without persistence: this model's layers are all below the default threshold.
    train(
        make_config(stage, "bf16: {enabled: true},", "", ", stage3_param_persistence_threshold: 0"),
        1, &r);
    INFO("stage " << stage << ": " << r.model_states_bytes() << " vs "
                  << r.predicted_model_states_bytes);
    // One rank: 16 bytes per parameter at every stage, plus alignment padding.
    const double ratio = static_cast<double>(r.model_states_bytes()) /
                         static_cast<double>(r.predicted_model_states_bytes);
    CHECK(ratio >= 1.0);
    CHECK(ratio < 1.05);
    CHECK(r.params_bytes * 6 == r.optimizer_bytes);  // 2-byte params; 4+4+4 bytes master, moments
  }
}

TEST_CASE("stage 3 keeps layers below the persistence threshold whole", "[zero][engine][memory]") {
  zero::MemoryReport gathered, persistent;
  const auto a =
      train(make_config(3, "bf16: {enabled: true},", "", ", stage3_param_persistence_threshold: 0"),
            3, &gathered);
  const auto b = train(make_config(3, "bf16: {enabled: true},"), 3, &persistent);
  // The whole fp32 copies of every layer count as parameters; the numbers do not change.
  CHECK(persistent.params_bytes > gathered.params_bytes + 4 * 12000);
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].loss == b[i].loss);
}

TEST_CASE("fp16 overflow skips steps and halves the scale as DeepSpeed does", "[zero][fp16]") {
  // 2^40 overflows fp16 gradients at once; each overflow halves the scale (stage 0 uses
  // DeepSpeed's FP16_Optimizer rule, no hysteresis) until the gradients fit.
  const auto run =
      train(make_config(0, "fp16: {enabled: true, initial_scale_power: 40, hysteresis: 1},"), 40);
  double expected_scale = std::ldexp(1.0, 40);
  int skipped = 0;
  for (const auto& s : run) {
    CHECK(s.loss_scale == expected_scale);
    if (!s.skipped) break;
    ++skipped;
    CHECK(s.lr == 0);
    expected_scale /= 2;
  }
  CHECK(skipped > 5);
  CHECK(skipped < 40);
  // Steps after the last overflow run at the scale reached, and train.
  CHECK_FALSE(run.back().skipped);
  CHECK(run.back().loss < run.front().loss);
}

TEST_CASE("ZeRO's scaler keeps the scale through hysteresis", "[zero][fp16]") {
  // Stage 1+: DynamicLossScaler with hysteresis 2 — the first overflow only spends
  // hysteresis, the second halves the scale.
  const auto run =
      train(make_config(1, "fp16: {enabled: true, initial_scale_power: 40, hysteresis: 2},"), 3);
  REQUIRE(run[0].skipped);
  CHECK(run[1].loss_scale == run[0].loss_scale);
  CHECK(run[2].loss_scale == run[1].loss_scale / 2);
}

TEST_CASE("nvme offload keeps the states in files under nvme_path and trains the same numbers",
          "[zero][engine][nvme]") {
  const auto dir =
      std::filesystem::temp_directory_path() / ("dstrain_nvme_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = dir.string();
  const std::string offload =
      ", stage3_param_persistence_threshold: 0, offload_optimizer: "
      "{device: nvme, nvme_path: " +
      path + "}, offload_param: {device: nvme, nvme_path: " + path + "}";
  zero::MemoryReport in_ram, on_nvme;
  const auto reference =
      train(make_config(3, "bf16: {enabled: true},", "", ", stage3_param_persistence_threshold: 0"),
            4, &in_ram);
  const auto offloaded = train(make_config(3, "bf16: {enabled: true},", "", offload), 4, &on_nvme);
  for (size_t i = 0; i < reference.size(); ++i) CHECK(offloaded[i].loss == reference[i].loss);
  // The 16-bit parameters, fp32 master weights and both Adam moments live in the files.
  CHECK(on_nvme.model_states_bytes() == in_ram.model_states_bytes());
  CHECK(on_nvme.nvme_bytes == on_nvme.params_bytes + on_nvme.optimizer_bytes);
  CHECK(in_ram.nvme_bytes == 0);
  // The files are unlinked as soon as they are mapped: nothing is left behind.
  CHECK(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

TEST_CASE("an nvme_path that is missing, not a folder or not writable stops the engine",
          "[zero][engine][nvme]") {
  const auto attempt = [](const std::string& path) {
    const auto cfg =
        make_config(3, "", "", ", offload_optimizer: {device: nvme, nvme_path: " + path + "}");
    model::Gpt gpt(cfg.model);
    std::vector<float> initial(static_cast<size_t>(gpt.layout().total));
    zero::Engine engine(cfg, gpt, initial.data(), std::make_unique<zero::SingleRankComm>());
  };
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(
      attempt("/nonexistent/dstrain"),
      Contains("zero_optimization.offload_optimizer.nvme_path") && Contains("does not exist"));
  CHECK_THROWS_WITH(attempt("/etc/hostname"), Contains("is not a folder"));
  // Not writable even for root.
  CHECK_THROWS_WITH(attempt("/proc/self"), Contains("cannot write in /proc/self"));
  CHECK_THROWS_AS(attempt("/nonexistent/dstrain"), UsageError);
}
