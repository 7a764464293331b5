// ZeRO across real ranks under dslaunch: at every stage, 2 and 4 ranks reproduce the
// losses of one rank with the same global batch (fp32, 20 steps, with and without
// gradient accumulation and clipping) within 1e-5 relative, and so do their validation losses
// where the ranks do not divide eval_batches; memory shrinks as ZeRO says.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "process_helpers.h"

using Catch::Matchers::Contains;
using ds::testing::kBin;
using ds::testing::metric_values;
using ds::testing::run;
using ds::testing::Run;
using ds::testing::TempDir;
using ds::testing::training_text;

namespace {

// `zero` and `root` add keys to zero_optimization and to the ds_config.
std::string config(int stage, int micro, int accumulation, double clipping,
                   const std::string& zero = "", const std::string& root = "") {
  return fmt::format(
      "model: {{n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 256, block_size: 32}}\n"
      "data: {{train: train.txt, seq_len: 32, shuffle: true, val_fraction: 0}}\n"
      "deepspeed: {{train_batch_size: 16, train_micro_batch_size_per_gpu: {}, "
      "gradient_accumulation_steps: {},\n  steps_per_print: 1, gradient_clipping: {}, {}"
      "zero_optimization: {{stage: {}{}}},\n"
      "  optimizer: {{type: AdamW, params: {{lr: 0.003, weight_decay: 0.1}}}}}}\n"
      "train: {{steps: 20, seed: 9}}\n",
      micro, accumulation, clipping, root, stage, zero);
}

// The losses of `cfg` on `world` ranks under dslaunch.
std::vector<double> losses_on(TempDir& dir, int world, const std::string& cfg) {
  return ds::testing::run_training(dir, kBin + "dslaunch --num_gpus " + std::to_string(world), cfg)
      .losses;
}

}  // namespace

TEST_CASE("every ZeRO stage on 2 and 4 ranks matches one rank", "[zero][dp]") {
  TempDir dir("dstrain_zero_dp");
  dir.write("train.txt", training_text(50000));
  struct Variant {
    int accumulation;
    double clipping;
  };
  for (const Variant v : {Variant{1, 0.0}, Variant{2, 0.05}}) {
    // One rank, the whole global batch of 16 per step.
    const auto expected =
        ds::testing::run_training(dir, kBin + "dsworker",
                                  config(0, 16 / v.accumulation, v.accumulation, v.clipping))
            .losses;
    REQUIRE(expected.size() == 20);
    for (int world : {2, 4}) {
      for (int stage : {0, 1, 2, 3}) {
        INFO("accumulation " << v.accumulation << ", clipping " << v.clipping << ", " << world
                             << " ranks, stage " << stage);
        const int micro = 16 / (v.accumulation * world);
        const auto losses = losses_on(dir, world, config(stage, micro, v.accumulation, v.clipping));
        REQUIRE(losses.size() == expected.size());
        for (size_t i = 0; i < losses.size(); ++i) {
          CHECK(losses[i] == Approx(expected[i]).epsilon(1e-5));
        }
      }
    }
  }
}

TEST_CASE("buckets, overlap, prefetch and gradient scaling keep the losses of one rank",
          "[zero][dp]") {
  TempDir dir("dstrain_zero_knobs");
  dir.write("train.txt", training_text(50000));
  const auto expected = losses_on(dir, 1, config(0, 8, 2, 0.05));
  REQUIRE(expected.size() == 20);
  // A block of this model has 12,704 parameters: 5000-element buckets hold one layer
  // each, 30000-element ones two blocks. Persistence 0 makes stage 3 gather every layer.
  struct Variant {
    int world, stage;
    std::string zero, root;
    double tolerance;
  };
  const std::string gather_all = ", stage3_param_persistence_threshold: 0";
  const std::vector<Variant> variants = {
      {2, 2, ", reduce_bucket_size: 5000, overlap_comm: true", "", 1e-5},
      {4, 2, ", reduce_bucket_size: 30000, overlap_comm: false", "", 1e-5},
      {2, 3, ", reduce_bucket_size: 5000" + gather_all, "", 1e-5},
      {4, 3, ", reduce_bucket_size: 30000, overlap_comm: false" + gather_all, "", 1e-5},
      {2, 3, ", stage3_prefetch_bucket_size: 0" + gather_all, "", 1e-5},
      {2, 3, ", stage3_max_live_parameters: 13000" + gather_all, "", 1e-5},
      {4, 1, ", reduce_bucket_size: 5000", "prescale_gradients: true, ", 1e-5},
      {4, 0, "", "gradient_predivide_factor: 2.0, ", 1e-5},
      {2, 2, ", reduce_bucket_size: 30000", "gradient_predivide_factor: 4.0, ", 1e-5},
      // bf16 on the wire rounds every reduced gradient to 8 bits of mantissa.
      {2, 2, "", "communication_data_type: bf16, ", 2e-2},
      {2, 0, "", "communication_data_type: fp16, ", 2e-2},
  };
  for (const Variant& v : variants) {
    INFO(v.world << " ranks, stage " << v.stage << ", zero {" << v.zero << "}, " << v.root);
    const int micro = 16 / (2 * v.world);
    const auto losses = losses_on(dir, v.world, config(v.stage, micro, 2, 0.05, v.zero, v.root));
    REQUIRE(losses.size() == expected.size());
    for (size_t i = 0; i < losses.size(); ++i) {
      CHECK(losses[i] == Approx(expected[i]).epsilon(v.tolerance));
    }
  }
}

TEST_CASE("ZeRO-3 evaluates eval_batches that the ranks do not divide as one rank does",
          "[zero][dp]") {
  // A ZeRO-3 forward gathers every layer (persistence 0), so each rank must run as many as the
  // others: 3 validation batches on 2 and 4 ranks leave some ranks a batch short.
  TempDir dir("dstrain_zero_eval");
  dir.write("train.txt", training_text(50000));
  const auto with_eval = [](std::string cfg) {
    cfg.replace(cfg.find("val_fraction: 0}"), 16, "val_fraction: 0.1}");
    cfg.replace(cfg.find("steps: 20,"), 10, "steps: 4, eval_every: 2, eval_batches: 3,");
    return cfg;
  };
  const std::string gather_all = ", stage3_param_persistence_threshold: 0";
  // Micro-batches of 4 everywhere, so that validation batch b is the same 4 sequences.
  const auto one =
      ds::testing::run_training(dir, kBin + "dsworker", with_eval(config(0, 4, 4, 0.0)));
  const std::vector<double> expected = metric_values(one.metrics, "val_loss");
  REQUIRE(expected.size() == 2);
  for (int world : {2, 4}) {
    INFO(world << " ranks");
    const auto run =
        ds::testing::run_training(dir, kBin + "dslaunch --num_gpus " + std::to_string(world),
                                  with_eval(config(3, 4, 4 / world, 0.0, gather_all)));
    const std::vector<double> val = metric_values(run.metrics, "val_loss");
    REQUIRE(val.size() == expected.size());
    for (size_t i = 0; i < val.size(); ++i) CHECK(val[i] == Approx(expected[i]).epsilon(1e-5));
  }
}

TEST_CASE("each rank reports its model-state memory, shrinking with the stage", "[zero][dp]") {
  TempDir dir("dstrain_zero_memory");
  dir.write("train.txt", training_text(50000));
  std::vector<double> per_stage;
  for (int stage : {0, 1, 2, 3}) {
    // This model's layers are all below the default stage3_param_persistence_threshold,
    // which would keep them whole on every rank.
    const std::string cfg = dir.write(
        "m.yaml",
        config(stage, 4, 1, 1.0, stage == 3 ? ", stage3_param_persistence_threshold: 0" : ""));
    const Run r = run(kBin + "dslaunch --num_gpus 4 " + cfg + " --steps 1 --metrics " +
                      dir.file("m{rank}.jsonl"));
    INFO(r.out);
    REQUIRE(r.code == 0);
    for (int rank = 0; rank < 4; ++rank) {
      const std::string metrics = dir.file(fmt::format("m{}.jsonl", rank));
      const auto actual = metric_values(metrics, "model_states_bytes");
      const auto predicted = metric_values(metrics, "predicted_model_states_bytes");
      REQUIRE(actual.size() == 2);  // at start, after the first step
      CHECK(actual[1] >= predicted[1]);
      CHECK(actual[1] <= predicted[1] * 1.10);  // padding of a small model
      if (rank == 0) per_stage.push_back(actual[1]);
    }
  }
  CHECK(per_stage[0] > per_stage[1]);
  CHECK(per_stage[1] > per_stage[2]);
  CHECK(per_stage[2] > per_stage[3]);
}

TEST_CASE("a checkpoint saved on 4 ranks at ZeRO-3 resumes on 2 ranks, on 1, and on a pipeline",
          "[zero][dp][checkpoint]") {
  TempDir dir("dstrain_zero_ckpt");
  dir.write("train.txt", training_text(50000));
  const auto with_dir = [&](const std::string& cfg, const std::string& ckpt) {
    return cfg + "checkpoint: {dir: " + ckpt + "}\n";
  };
  // The unchanged run: 20 steps on 4 ranks at stage 3.
  const auto expected = losses_on(dir, 4, with_dir(config(3, 4, 1, 1.0), "straight"));
  REQUIRE(expected.size() == 20);
  // 10 steps on 4 ranks at stage 3, then the rest elsewhere.
  const std::string first = dir.write("f.yaml", with_dir(config(3, 4, 1, 1.0), "ck"));
  REQUIRE(run(kBin + "dslaunch --num_gpus 4 " + first + " --steps 10").code == 0);
  struct Layout {
    int world, stage, micro, accumulation;
    std::string root;
  };
  const std::vector<Layout> layouts = {
      {2, 1, 8, 1, ""},
      {1, 0, 16, 1, ""},
      // 2 pipeline stages x 2 data-parallel ranks, 2 micro-batches in flight.
      {4, 1, 4, 2, "pipeline: {stages: 2}, "}};
  for (const Layout& l : layouts) {
    INFO(l.world << " ranks, stage " << l.stage << " " << l.root);
    const std::string ckpt = fmt::format("ck_{}_{}_{}", l.world, l.stage, l.accumulation);
    std::filesystem::copy(dir.file("ck"), dir.file(ckpt), std::filesystem::copy_options::recursive);
    const auto r = ds::testing::run_training(
        dir, kBin + "dslaunch --num_gpus " + std::to_string(l.world),
        with_dir(config(l.stage, l.micro, l.accumulation, 1.0, "", l.root), ckpt));
    CHECK_THAT(r.out, Contains("resumed from"));
    const auto& losses = r.losses;
    REQUIRE(losses.size() == 10);
    for (size_t i = 0; i < losses.size(); ++i) {
      CHECK(losses[i] == Approx(expected[i + 10]).epsilon(1e-5));
    }
  }
}
