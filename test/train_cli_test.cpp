// dsworker training end to end: determinism, bad input, weights in and out, Ctrl-C.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
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

namespace {

std::string config(const std::string& extra_data = "", int steps = 6) {
  return "model: {n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 256, block_size: 32}\n"
         "data: {train: train.txt, seq_len: 32, shuffle: true" +
         extra_data +
         "}\n"
         "deepspeed: {train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2,\n"
         "  steps_per_print: 1, optimizer: {type: AdamW, params: {lr: 0.003}}}\n"
         "train: {steps: " +
         std::to_string(steps) + ", eval_every: 3, eval_batches: 2, seed: 11}\n";
}

// An llm.c shard: 256 int32 of header, then uint16 tokens.
std::string shard(int32_t magic, int32_t version, const std::vector<uint16_t>& tokens,
                  int32_t count_in_header) {
  std::vector<int32_t> header(256, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = count_in_header;
  std::string bytes(reinterpret_cast<const char*>(header.data()), 1024);
  bytes.append(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
  return bytes;
}

}  // namespace

TEST_CASE("the same config twice gives bit-identical losses", "[train]") {
  TempDir dir("dstrain_train_determinism");
  dir.write("train.txt", training_text(40000));
  const std::string cfg = dir.write("train.yaml", config());
  const Run a = run(kBin + "dsworker " + cfg + " --metrics " + dir.file("a.jsonl"));
  const Run b = run(kBin + "dsworker " + cfg + " --metrics " + dir.file("b.jsonl"));
  INFO(a.out);
  REQUIRE(a.code == 0);
  REQUIRE(b.code == 0);
  auto strip_timing = [](const std::string& text) {
    std::string out;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      const auto cut = line.find(",\"tokens_per_s\"");
      out += (cut == std::string::npos ? line : line.substr(0, cut)) + "\n";
    }
    return out;
  };
  const std::string first = strip_timing(read_file(dir.file("a.jsonl")));
  CHECK(first == strip_timing(read_file(dir.file("b.jsonl"))));
  CHECK_THAT(first, Contains("{\"step\":1,\"loss\":"));
  CHECK_THAT(first, Contains("\"grad_norm\":"));
  CHECK_THAT(first, Contains("{\"step\":3,\"val_loss\":"));
  CHECK_THAT(read_file(dir.file("a.jsonl")), Contains("\"elapsed_s\":"));
}

TEST_CASE("weights go out with Hugging Face names and come back in", "[train]") {
  TempDir dir("dstrain_train_weights");
  dir.write("train.txt", training_text(40000));
  const std::string cfg = dir.write("train.yaml", config("", 3));
  const Run saved = run(kBin + "dsworker " + cfg + " --save-weights " + dir.file("w.safetensors"));
  INFO(saved.out);
  REQUIRE(saved.code == 0);
  const auto file = ds::checkpoint::SafetensorsFile::load(dir.file("w.safetensors"));
  CHECK(file.contains("transformer.wte.weight"));
  CHECK(file.at("transformer.h.1.attn.c_attn.weight").shape == std::vector<int64_t>{32, 96});
  CHECK(file.at("transformer.h.0.mlp.c_proj.weight").shape == std::vector<int64_t>{128, 32});
  CHECK_FALSE(file.contains("lm_head.weight"));  // tied
  CHECK(file.metadata().at("format") == "pt");

  const Run resumed =
      run(kBin + "dsworker " + cfg + " --init-weights " + dir.file("w.safetensors"));
  INFO(resumed.out);
  CHECK(resumed.code == 0);
}

TEST_CASE("bad data stops the run before training, exit 2", "[train][errors]") {
  TempDir dir("dstrain_train_bad_data");
  SECTION("an empty text file") {
    dir.write("train.txt", "");
    const Run r = run(kBin + "dsworker " + dir.write("train.yaml", config()));
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("train.txt"));
    CHECK_THAT(r.out, Contains("empty"));
  }
  SECTION("a missing file") {
    const Run r = run(kBin + "dsworker " + dir.write("train.yaml", config()));
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("train.txt"));
  }
  SECTION("a shard with the wrong magic") {
    dir.write("s.bin", shard(12345, 1, std::vector<uint16_t>(100, 1), 100));
    std::string cfg = config();
    cfg.replace(cfg.find("train.txt"), 9, "s.bin");
    const Run r = run(kBin + "dsworker " + dir.write("train.yaml", cfg));
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("s.bin"));
    CHECK_THAT(r.out, Contains("magic"));
  }
  SECTION("a truncated shard") {
    dir.write("s.bin", shard(20240520, 1, std::vector<uint16_t>(100, 1), 200));
    std::string cfg = config();
    cfg.replace(cfg.find("train.txt"), 9, "s.bin");
    const Run r = run(kBin + "dsworker " + dir.write("train.yaml", cfg));
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("s.bin"));
  }
  SECTION("a token id beyond the vocabulary") {
    std::vector<uint16_t> tokens(200, 5);
    tokens[57] = 300;
    dir.write("s.bin", shard(20240520, 1, tokens, 200));
    std::string cfg = config();
    cfg.replace(cfg.find("train.txt"), 9, "s.bin");
    const Run r = run(kBin + "dsworker " + dir.write("train.yaml", cfg));
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("300"));
    CHECK_THAT(r.out, Contains("s.bin"));
  }
}

TEST_CASE("bad initial weights are named, exit 2", "[train][errors]") {
  TempDir dir("dstrain_train_bad_weights");
  dir.write("train.txt", training_text(40000));
  const std::string cfg = dir.write("train.yaml", config("", 1));
  REQUIRE(run(kBin + "dsworker " + cfg + " --save-weights " + dir.file("good.safetensors")).code ==
          0);
  const auto good = ds::checkpoint::SafetensorsFile::load(dir.file("good.safetensors"));
  auto rewrite = [&](const std::string& name, const std::string& drop, const std::string& extra,
                     const std::string& reshape) {
    std::vector<ds::checkpoint::StTensorRef> refs;
    std::vector<float> extra_data(4, 0.0f);
    for (const auto& t : good.tensors()) {
      if (t.name == drop) continue;
      auto shape = t.shape;
      if (t.name == reshape) shape = {shape[1], shape[0]};
      refs.push_back({t.name, t.dtype, shape, t.data.data()});
    }
    if (!extra.empty())
      refs.push_back({extra, ds::checkpoint::StDType::kF32, {4}, extra_data.data()});
    ds::checkpoint::write_safetensors(dir.file(name), refs);
    return run(kBin + "dsworker " + cfg + " --init-weights " + dir.file(name));
  };
  Run r = rewrite("missing.safetensors", "transformer.h.1.ln_2.bias", "", "");
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("transformer.h.1.ln_2.bias"));
  CHECK_THAT(r.out, Contains("missing"));
  r = rewrite("extra.safetensors", "", "transformer.h.7.ln_1.weight", "");
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("transformer.h.7.ln_1.weight"));
  r = rewrite("shape.safetensors", "", "", "transformer.h.0.attn.c_attn.weight");
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("[96, 32]"));
  r = run(kBin + "dsworker " + cfg + " --init-weights " + dir.write("junk.safetensors", "junk"));
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("junk.safetensors"));
}

TEST_CASE("Ctrl-C stops training cleanly with exit code 130", "[train][signal]") {
  TempDir dir("dstrain_train_interrupt");
  dir.write("train.txt", training_text(40000));
  const std::string cfg = dir.write("train.yaml", config("", 1000000));
  const std::string metrics = dir.file("m.jsonl");
  const std::string log = dir.file("log.txt");
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    const std::string program = kBin + "dsworker";
    execl(program.c_str(), "dsworker", cfg.c_str(), "--metrics", metrics.c_str(), nullptr);
    _exit(127);
  }
  // Whatever happens below, the child does not outlive the test.
  struct Reaper {
    pid_t pid;
    bool done = false;
    ~Reaper() {
      if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
  } reaper{pid};

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (read_file(metrics).find("\"step\":2,") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(kill(pid, SIGINT) == 0);
  int status = 0;
  const auto wait_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (waitpid(pid, &status, WNOHANG) == 0 && std::chrono::steady_clock::now() < wait_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  reaper.done = WIFEXITED(status) || WIFSIGNALED(status);
  INFO(read_file(log));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK_THAT(read_file(log), Contains("interrupted by signal 2"));
}

TEST_CASE("train.device: cuda without a visible GPU is refused by name and auto uses the CPU",
          "[train][errors]") {
  TempDir dir("dstrain_train_device");
  dir.write("train.txt", training_text(40000));
  // CUDA_VISIBLE_DEVICES="" hides every GPU, so this holds on a GPU machine too.
  const std::string hidden = "env CUDA_VISIBLE_DEVICES= " + kBin + "dsworker ";
  std::string cuda_cfg = config("", 2);
  cuda_cfg.replace(cuda_cfg.find("seed: 11}"), 9, "seed: 11, device: cuda}");
  const std::string cuda = dir.write("cuda.yaml", cuda_cfg);
  const Run refused = run(hidden + cuda);
  INFO(refused.out);
  CHECK(refused.code == 2);
  CHECK_THAT(refused.out, Contains("train.device: cuda, but no CUDA device is visible"));
  CHECK_THAT(refused.out, Contains("CUDA_VISIBLE_DEVICES=\"\""));

  const std::string autodetect = dir.write("auto.yaml", config("", 2));
  const Run trained = run(hidden + autodetect + " --verbose");
  INFO(trained.out);
  CHECK(trained.code == 0);
}
