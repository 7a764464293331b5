// The device paths across real processes, without a GPU: DS_EMULATED_DEVICE=1 puts each rank's
// model and states on the emulated device (host memory reached as a GPU's is), so collectives
// are staged through host memory (zero/device_comm.h), pipeline activations travel through
// host staging, and checkpoints copy the device states out and back. The emulated device runs
// the CPU's kernels, so every run must give the CPU's losses bit for bit; and a checkpoint
// saved by one resumes on the other.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "process_helpers.h"

using Catch::Matchers::Contains;
using ds::testing::kBin;
using ds::testing::run;
using ds::testing::Run;
using ds::testing::TempDir;
using ds::testing::training_text;

namespace {

std::string config(int stage, int micro, const std::string& root, const std::string& checkpoint) {
  return fmt::format(
      "model: {{n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 256, block_size: 32}}\n"
      "data: {{train: train.txt, seq_len: 32, shuffle: true, val_fraction: 0}}\n"
      "deepspeed: {{train_batch_size: 16, train_micro_batch_size_per_gpu: {}, steps_per_print: 1,\n"
      "  gradient_clipping: 1.0, bf16: {{enabled: true}}, {}zero_optimization: {{stage: {}}},\n"
      "  optimizer: {{type: AdamW, params: {{lr: 0.003, weight_decay: 0.1}}}}}}\n"
      "train: {{steps: 8, seed: 9}}\n{}",
      micro, root, stage, checkpoint.empty() ? "" : "checkpoint: {dir: " + checkpoint + "}\n");
}

const std::string kEmulated = "env DS_EMULATED_DEVICE=1 ";

std::vector<double> losses(TempDir& dir, const std::string& prefix, int world,
                           const std::string& cfg, const std::string& args = "") {
  const ds::testing::TrainingRun r = ds::testing::run_training(
      dir, prefix + kBin + "dslaunch --num_gpus " + std::to_string(world), cfg, args);
  if (!prefix.empty()) CHECK_THAT(r.out, Contains("emulated"));
  // Device memory is reported beside the host's when the run holds any.
  const bool device_memory =
      ds::testing::read_file(r.metrics).find("\"device_memory_bytes\"") != std::string::npos;
  CHECK(device_memory == !prefix.empty());
  return r.losses;
}

}  // namespace

TEST_CASE("ranks on an emulated device train the CPU's losses bit for bit", "[device][dp]") {
  TempDir dir("dstrain_emulated");
  dir.write("train.txt", training_text(50000));
  struct Variant {
    int world, stage, micro;
    std::string root;
  };
  const std::vector<Variant> variants = {
      {1, 0, 16, ""},
      {2, 1, 8, ""},
      {2, 2, 8, ""},
      {2, 3, 8, ""},
      {2, 1, 4, "pipeline: {stages: 2}, "},  // 2 stages, 4 micro-batches in flight
      {4, 0, 4, "pipeline: {stages: 2}, "},  // 2 stages x 2 data-parallel ranks
  };
  for (const Variant& v : variants) {
    INFO(v.world << " ranks, stage " << v.stage << " " << v.root);
    const std::string cfg = config(v.stage, v.micro, v.root, "");
    const auto cpu = losses(dir, "", v.world, cfg);
    const auto device = losses(dir, kEmulated, v.world, cfg);
    REQUIRE(cpu.size() == 8);
    CHECK(device == cpu);
  }
}

TEST_CASE("a checkpoint saved from device states resumes on the CPU and back",
          "[device][checkpoint]") {
  TempDir dir("dstrain_emulated_ckpt");
  dir.write("train.txt", training_text(50000));
  const auto straight = losses(dir, "", 2, config(3, 8, "", "straight"));
  REQUIRE(straight.size() == 8);
  // 4 steps on emulated devices, the rest on the CPU; and the other way round.
  for (const auto& [first, second] :
       {std::pair{kEmulated, std::string()}, std::pair{std::string(), kEmulated}}) {
    const std::string ckpt = first.empty() ? "from_cpu" : "from_device";
    INFO(ckpt);
    losses(dir, first, 2, config(3, 8, "", ckpt), "--steps 4");
    const auto rest = losses(dir, second, 2, config(3, 8, "", ckpt));
    REQUIRE(rest.size() == 4);
    for (size_t i = 0; i < rest.size(); ++i) CHECK(rest[i] == straight[i + 4]);
  }
}

TEST_CASE("a sample at the end of a run on an emulated device reads host weights on the host",
          "[device]") {
  TempDir dir("dstrain_emulated_sample");
  dir.write("train.txt", training_text(50000));
  const std::string path = dir.write("run.yaml", config(0, 16, "", ""));
  const Run r = run(kEmulated + kBin + "dsworker " + path + " --steps 2 --sample 16");
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("sample"));
}

TEST_CASE("NCCL is refused for ranks on the emulated device, whose memory is the host's",
          "[device][errors]") {
  TempDir dir("dstrain_emulated_nccl");
  dir.write("train.txt", training_text(50000));
  const std::string path = dir.write("run.yaml", config(1, 8, "", ""));
  const Run r =
      run("env DS_COMM_BACKEND=nccl " + kEmulated + kBin + "dslaunch --num_gpus 2 " + path);
  INFO(r.out);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("DS_COMM_BACKEND=nccl"));
  CHECK_THAT(r.out, Contains("NCCL cannot move"));
}
