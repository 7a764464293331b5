// Checkpoints end to end: exact resume, resume on another ZeRO stage, damaged files,
// a changed model, SIGKILL while saving, save on SIGTERM, dsckpt export/verify.
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "checkpoint/safetensors.h"
#include "process_helpers.h"

using Catch::Matchers::Contains;
using ds::testing::kBin;
using ds::testing::read_file;
using ds::testing::run;
using ds::testing::Run;
using ds::testing::TempDir;
using ds::testing::training_text;
namespace fs = std::filesystem;

namespace {

std::string config(int stage, const std::string& ckpt, int steps = 8, int layers = 2,
                   const std::string& extra_checkpoint = "") {
  return "model: {n_layer: " + std::to_string(layers) +
         ", n_head: 2, n_embd: 32, vocab_size: 256, block_size: 32}\n"
         "data: {train: train.txt, seq_len: 32, shuffle: true, val_fraction: 0}\n"
         "deepspeed: {train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2,\n"
         "  steps_per_print: 1, zero_optimization: {stage: " +
         std::to_string(stage) +
         "},\n"
         "  optimizer: {type: AdamW, params: {lr: 0.003, weight_decay: 0.1}},\n"
         "  scheduler: {type: WarmupDecayLR, params: {total_num_steps: auto, "
         "warmup_num_steps: 3}}}\n"
         "train: {steps: " +
         std::to_string(steps) + ", seed: 3}\ncheckpoint: {dir: " + ckpt + extra_checkpoint + "}\n";
}

// The "loss" of each step record, in order.
std::vector<double> losses(const std::string& metrics) {
  return ds::testing::metric_values(metrics, "loss");
}

}  // namespace

TEST_CASE("N steps, resume, N steps equal 2N steps bit for bit", "[checkpoint]") {
  TempDir dir("dstrain_ckpt_exact");
  dir.write("train.txt", training_text(60000));
  const std::string straight = dir.write("straight.yaml", config(2, "straight_ckpt"));
  const std::string split = dir.write("split.yaml", config(2, "split_ckpt"));
  REQUIRE(run(kBin + "dsworker " + straight + " --metrics " + dir.file("a.jsonl")).code == 0);
  REQUIRE(run(kBin + "dsworker " + split + " --steps 4 --metrics " + dir.file("b.jsonl")).code ==
          0);
  const Run resumed = run(kBin + "dsworker " + split + " --metrics " + dir.file("b.jsonl"));
  INFO(resumed.out);
  REQUIRE(resumed.code == 0);
  CHECK_THAT(resumed.out, Contains("resumed from"));
  CHECK_THAT(resumed.out, Contains("global_step4 at step 4"));
  const auto a = losses(dir.file("a.jsonl")), b = losses(dir.file("b.jsonl"));
  REQUIRE(a.size() == 8);
  REQUIRE(b.size() == 8);
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);
  CHECK(read_file(dir.file("split_ckpt/latest")) == "global_step8\n");
}

TEST_CASE("a checkpoint of one ZeRO stage resumes on another", "[checkpoint]") {
  TempDir dir("dstrain_ckpt_layout");
  dir.write("train.txt", training_text(60000));
  REQUIRE(run(kBin + "dsworker " + dir.write("s3.yaml", config(3, "ck")) + " --steps 4").code == 0);
  REQUIRE(run(kBin + "dsworker " + dir.write("ref.yaml", config(3, "ref")) + " --metrics " +
              dir.file("ref.jsonl"))
              .code == 0);
  for (int stage : {0, 1}) {
    INFO("resumed at stage " << stage);
    const std::string ckpt = fmt::format("ck{}", stage);
    fs::copy(dir.file("ck"), dir.file(ckpt), fs::copy_options::recursive);
    const std::string cfg = dir.write("s.yaml", config(stage, ckpt));
    const std::string metrics = dir.file(fmt::format("s{}.jsonl", stage));
    const Run r = run(kBin + "dsworker " + cfg + " --metrics " + metrics);
    INFO(r.out);
    REQUIRE(r.code == 0);
    const auto ref = losses(dir.file("ref.jsonl")), got = losses(metrics);
    REQUIRE(got.size() == 4);
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(ref[i + 4]).epsilon(1e-5));
  }
}

TEST_CASE("damaged checkpoints and changed models are refused, exit 2", "[checkpoint][errors]") {
  TempDir dir("dstrain_ckpt_damage");
  dir.write("train.txt", training_text(60000));
  const std::string cfg = dir.write("c.yaml", config(1, "ck", 2));
  REQUIRE(run(kBin + "dsworker " + cfg).code == 0);
  const std::string file = dir.file("ck/global_step2/rank0.safetensors");
  const std::string original = read_file(file);

  SECTION("a flipped byte") {
    std::string bytes = original;
    bytes[bytes.size() / 2] ^= 0x40;
    std::ofstream(file, std::ios::binary) << bytes;
    Run r = run(kBin + "dsworker " + cfg + " --steps 3");
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("rank0.safetensors"));
    CHECK_THAT(r.out, Contains("CRC-32 mismatch"));
    r = run(kBin + "dsckpt verify " + dir.file("ck"));
    CHECK(r.code == 2);
  }
  SECTION("a truncated file") {
    std::ofstream(file, std::ios::binary) << original.substr(0, original.size() / 3);
    const Run r = run(kBin + "dsworker " + cfg + " --steps 3");
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("truncated"));
  }
  SECTION("a missing file") {
    fs::remove(file);
    const Run r = run(kBin + "dsworker " + cfg + " --steps 3");
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("missing"));
  }
  SECTION("a model with another shape") {
    const Run r = run(kBin + "dsworker " + dir.write("d.yaml", config(1, "ck", 3, 3)));
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("transformer.h.2"));
  }
  SECTION("latest naming a tag that is gone") {
    fs::remove_all(dir.file("ck/global_step2"));
    const Run r = run(kBin + "dsworker " + cfg + " --steps 3");
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("global_step2"));
  }
}

TEST_CASE("SIGKILL while saving never breaks latest", "[checkpoint][signal]") {
  TempDir dir("dstrain_ckpt_kill");
  dir.write("train.txt", training_text(60000));
  // Saves every step, so kills land inside saves often.
  const std::string cfg =
      dir.write("k.yaml", config(3, "ck", 100000, 4, ", save_every: 1, keep: 2"));
  for (int attempt = 0; attempt < 6; ++attempt) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const std::string program = kBin + "dsworker";
      freopen("/dev/null", "w", stdout);
      freopen("/dev/null", "w", stderr);
      execl(program.c_str(), "dsworker", cfg.c_str(), nullptr);
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + 170 * attempt));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    if (!fs::exists(dir.file("ck/latest"))) continue;  // killed before the first save
    const Run verify = run(kBin + "dsckpt verify " + dir.file("ck"));
    INFO("attempt " << attempt << ": " << verify.out);
    CHECK(verify.code == 0);
  }
  // And the run resumes from what is there.
  const Run resumed = run(kBin + "dsworker " + cfg + " --steps 1");
  CHECK(resumed.code == 0);
}

TEST_CASE("SIGTERM with save_on_signal saves, and the run resumes there", "[checkpoint][signal]") {
  TempDir dir("dstrain_ckpt_term");
  dir.write("train.txt", training_text(60000));
  const std::string cfg = dir.write("t.yaml", config(1, "ck", 100000, 2, ", save_on_signal: true"));
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const std::string program = kBin + "dsworker";
    const std::string log = dir.file("log.txt");
    freopen(log.c_str(), "w", stderr);
    execl(program.c_str(), "dsworker", cfg.c_str(), nullptr);
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  INFO(read_file(dir.file("log.txt")));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 143);
  CHECK_THAT(read_file(dir.file("log.txt")), Contains("saved checkpoint"));
  const Run r = run(kBin + "dsworker " + cfg + " --steps 1");
  CHECK_THAT(r.out, Contains("resumed from"));
}

TEST_CASE("dsckpt exports the weights a run ends with", "[checkpoint][dsckpt]") {
  TempDir dir("dstrain_ckpt_export");
  dir.write("train.txt", training_text(60000));
  const std::string cfg = dir.write("e.yaml", config(3, "ck", 3));
  REQUIRE(run(kBin + "dsworker " + cfg + " --save-weights " + dir.file("final.safetensors")).code ==
          0);
  Run r = run(kBin + "dsckpt export " + dir.file("ck") + " -o " + dir.file("export.safetensors"));
  INFO(r.out);
  REQUIRE(r.code == 0);
  const auto a = ds::checkpoint::SafetensorsFile::load(dir.file("final.safetensors"));
  const auto b = ds::checkpoint::SafetensorsFile::load(dir.file("export.safetensors"));
  REQUIRE(a.tensors().size() == b.tensors().size());
  for (const auto& t : a.tensors()) CHECK(a.f32(t.name) == b.f32(t.name));
  r = run(kBin + "dsckpt inspect " + dir.file("ck"));
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("global_step3"));
  r = run(kBin + "dsckpt export " + dir.file("ck") + " -o " + dir.file("b.safetensors") +
          " --dtype bf16");
  CHECK(r.code == 0);
  CHECK(ds::checkpoint::SafetensorsFile::load(dir.file("b.safetensors"))
            .at("transformer.wte.weight")
            .dtype == ds::checkpoint::StDType::kBF16);
}
