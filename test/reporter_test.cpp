// The reporter: what the terminal, the metrics file and the monitors get from a run,
// driven with made-up step statistics (no training), and MFU's arithmetic.
#include "worker/reporter.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "config_helpers.h"
#include "process_helpers.h"
#include "worker/mfu.h"

namespace ds::worker {
namespace {

using Catch::Matchers::Contains;
using ds::testing::TempDir;

// Reporter output captured in memory.
class Capture {
 public:
  Capture() : stream_(open_memstream(&data_, &size_)) { REQUIRE(stream_ != nullptr); }
  ~Capture() {
    std::fclose(stream_);
    std::free(data_);
  }
  std::FILE* stream() { return stream_; }
  std::string text() {
    std::fflush(stream_);
    return std::string(data_, size_);
  }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
  std::FILE* stream_;
};

std::string config_yaml(const std::string& extra_ds = "") {
  return "model: {n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 256, block_size: 16}\n"
         "data: {train: corpus.txt, seq_len: 16}\n"
         "deepspeed: {train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2,"
         " steps_per_print: 10" +
         extra_ds +
         "}\n"
         "train: {steps: 20}\n";
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

zero::MemoryReport memory() {
  zero::MemoryReport r;
  r.params_bytes = 1 << 20;
  r.grads_bytes = 1 << 20;
  r.optimizer_bytes = 2 << 20;
  r.predicted_model_states_bytes = 4 << 20;
  return r;
}

RunInfo info() {
  RunInfo i;
  i.parameters = 12345;
  i.data_source = "corpus.txt";
  i.train_tokens = 100000;
  i.val_tokens = 5000;
  return i;
}

zero::StepStats stats(int64_t step) {
  zero::StepStats s;
  s.loss = 5.0 - 0.1 * static_cast<double>(step);
  s.grad_norm = 1.5;
  s.lr = 1e-3;
  s.loss_scale = 1024;
  return s;
}

// Runs 20 steps of 0.5 s each with an eval at step 10.
void drive(Reporter& r, const StepTimes* times = nullptr) {
  r.on_start(info(), memory());
  for (int64_t step = 1; step <= 20; ++step) {
    r.on_step(step, stats(step), 0.5, times);
    if (step == 10) r.on_eval(step, 4.25);
  }
  r.on_finish(20);
}

TEST_CASE("FLOPs per token are 6N + 6LCT, as llm.c counts them", "[mfu]") {
  // GPT-2 124M at T = 1024: 6 * 124,439,808 + 6 * 12 * 768 * 1024.
  CHECK(flops_per_token(124439808, 12, 768, 1024) == 803261952.0);
  CHECK(flops_per_token(1000, 2, 32, 16) == 6000.0 + 6 * 2 * 32 * 16);
}

TEST_CASE("GPU peaks come from the table by device name", "[mfu]") {
  CHECK(gpu_peak_flops("NVIDIA H100 80GB HBM3", Precision::kBf16) == 989.4e12);
  CHECK(gpu_peak_flops("NVIDIA H100 PCIe", Precision::kBf16) == 756e12);
  CHECK(gpu_peak_flops("NVIDIA A100-SXM4-80GB", Precision::kFp32) == 156e12);
  CHECK(gpu_peak_flops("NVIDIA A10", Precision::kBf16) == 125e12);  // not an A100
  CHECK(gpu_peak_flops("NVIDIA L40S", Precision::kFp16) == 362e12);
  CHECK(gpu_peak_flops("NVIDIA L4", Precision::kBf16) == 121e12);
  CHECK_FALSE(gpu_peak_flops("Tesla V100-SXM2-16GB", Precision::kBf16));
  CHECK(gpu_peak_flops("Tesla V100-SXM2-16GB", Precision::kFp16) == 125e12);
  CHECK_FALSE(gpu_peak_flops("Some Future GPU", Precision::kBf16));
}

TEST_CASE("the CPU peak is measured with sgemm and says so", "[mfu]") {
  const PeakFlops peak = measure_cpu_peak(0.05);
  CHECK(peak.flops_per_s > 1e8);
  CHECK_THAT(peak.source, Contains("sgemm"));
  CHECK_THAT(peak.source, Contains("thread"));
}

TEST_CASE("human-readable numbers", "[reporter]") {
  CHECK(human_count(842496) == "842.5K");
  CHECK(human_count(124439808) == "124.44M");
  CHECK(human_count(12) == "12");
  CHECK(human_duration(42) == "42s");
  CHECK(human_duration(250) == "4m10s");
  CHECK(human_duration(3725) == "1h02m");
  CHECK(human_flops(41.2e9) == "41.2 GFLOP/s");
  CHECK(human_flops(312e12) == "312.0 TFLOP/s");
}

TEST_CASE("plain output: banner, prints every steps_per_print, eval, finish", "[reporter]") {
  TempDir dir("reporter_plain");
  const config::TrainConfig cfg = config::testing::train_from(config_yaml());
  Capture out;
  ReportOptions options;
  options.stream = out.stream();
  options.peak_flops = 1e9;
  options.metrics_path = dir.file("m.jsonl");
  {
    Reporter reporter(cfg, options, 0, 1);
    CHECK_FALSE(reporter.live());
    CHECK(reporter.tokens_per_step() == 8 * 16);
    drive(reporter);
  }
  const std::string text = out.text();
  CHECK(text.find('\r') == std::string::npos);
  CHECK_THAT(text, Contains("model gpt: 2 layers, 2 heads, 32 wide, vocab 256"));
  CHECK_THAT(text, Contains("8 sequences of 16 tokens per step (4 micro x 2 accumulation x 1"));
  CHECK_THAT(text, Contains("peak 1.0 GFLOP/s per rank"));
  CHECK_THAT(text, Contains("memory at start: rank 0, stage 0"));
  CHECK_THAT(text, Contains("step      1/20 | loss 4.9000"));
  CHECK_THAT(text, Contains("step     10/20 | loss 4.0000 | lr 1.000e-03 | grad norm 1.5000"));
  CHECK_THAT(text, Contains("| 256 tok/s | 16.0 samples/s |"));
  CHECK_THAT(text, Contains("| ETA "));
  CHECK_THAT(text, Contains("step     10/20 | val loss 4.2500"));
  CHECK_THAT(text, Contains("step     20/20 | loss 3.0000"));
  CHECK_THAT(text, Contains("done: 20 steps in"));
  CHECK(text.find("step      2/20") == std::string::npos);  // not a print step
  CHECK(text.find("scale") == std::string::npos);           // fp32: no loss scale

  const auto records = read_jsonl(dir.file("m.jsonl"));
  REQUIRE(records.size() == 5);  // memory, steps 1, 10, val 10, step 20
  CHECK(records[0]["event"] == "memory");
  CHECK(records[0]["memory_bytes"].contains("parameters"));
  const auto& s10 = records[2];
  CHECK(s10["step"] == 10);
  CHECK(s10["tokens_per_s"] == Approx(9 * 128 / 4.5));
  CHECK(s10["samples_per_s"] == Approx(9 * 8 / 4.5));
  const double flops = flops_per_token(cfg.model.parameter_count(), 2, 32, 16);
  CHECK(s10["tflops"] == Approx(flops * 256 / 1e12));
  CHECK(s10["mfu"] == Approx(flops * 256 / 1e9));
  CHECK(s10["memory_bytes"].contains("activations"));
  CHECK(records[3] == nlohmann::json({{"step", 10}, {"val_loss", 4.25}}));
  // The first keys stay where existing readers of the file expect them.
  std::ifstream in(dir.file("m.jsonl"));
  std::string line;
  std::getline(in, line);
  std::getline(in, line);
  CHECK_THAT(line,
             Catch::Matchers::StartsWith("{\"step\":1,\"loss\":4.9,\"lr\":0.001,\"grad_norm\""));
}

TEST_CASE("fp16 shows the loss scale and warns about skipped steps", "[reporter]") {
  const config::TrainConfig cfg =
      config::testing::train_from(config_yaml(", fp16: {enabled: true}"));
  Capture out;
  ReportOptions options;
  options.stream = out.stream();
  options.peak_flops = 0;
  Reporter reporter(cfg, options, 0, 1);
  reporter.on_start(info(), memory());
  zero::StepStats s = stats(1);
  s.skipped = true;
  reporter.on_step(1, s, 0.1);
  const std::string text = out.text();
  CHECK_THAT(text, Contains("warning: step 1: gradient overflow at loss scale 1024"));
  CHECK_THAT(text, Contains("| scale 1024 |"));
  CHECK_THAT(text, Contains("peak unknown, no MFU"));
  CHECK(text.find("MFU ") == std::string::npos);
}

TEST_CASE("the live line redraws in place and is cleared before plain lines", "[reporter]") {
  const config::TrainConfig cfg = config::testing::train_from(config_yaml());
  Capture out;
  ReportOptions options;
  options.stream = out.stream();
  options.peak_flops = 1e9;
  options.live = true;
  {
    Reporter reporter(cfg, options, 0, 1);
    CHECK(reporter.live());
    drive(reporter);
  }
  const std::string text = out.text();
  CHECK_THAT(text, Contains("\r\033[Kstep 1/20 5.0% | loss 4.9000"));
  CHECK_THAT(text, Contains("\r\033[Kstep 20/20 100.0% | loss 3.0000"));
  CHECK_THAT(text, Contains("| MFU "));
  // Plain lines never follow a live line on the same row.
  for (size_t at = 0; (at = text.find("done: ", at)) != std::string::npos; ++at) {
    CHECK(text.substr(at - 4, 4) == "\r\033[K");
  }
  CHECK(text.substr(text.size() - 1) == "\n");  // nothing left on the last row
}

TEST_CASE("quiet shows only the end; verbose every step and memory", "[reporter]") {
  const config::TrainConfig cfg = config::testing::train_from(config_yaml());
  SECTION("quiet") {
    Capture out;
    ReportOptions options;
    options.stream = out.stream();
    options.peak_flops = 1e9;
    options.quiet = true;
    Reporter reporter(cfg, options, 0, 1);
    drive(reporter);
    reporter.print_sample("Hello");
    const std::string text = out.text();
    CHECK(text.find("loss") == std::string::npos);
    CHECK(text.find("model") == std::string::npos);
    CHECK_THAT(text, Contains("done: 20 steps"));
    CHECK_THAT(text, Contains("Hello"));
  }
  SECTION("verbose") {
    Capture out;
    ReportOptions options;
    options.stream = out.stream();
    options.peak_flops = 1e9;
    options.verbose = true;
    Reporter reporter(cfg, options, 0, 1);
    CHECK_FALSE(reporter.live());
    drive(reporter);
    const std::string text = out.text();
    for (int step = 1; step <= 20; ++step) {
      CHECK_THAT(text, Contains(fmt::format("step {:>6}/20 | loss", step)));
    }
    CHECK_THAT(text, Contains("| memory: parameters"));
  }
  SECTION("both") {
    ReportOptions options;
    options.quiet = options.verbose = true;
    CHECK_THROWS_AS(Reporter(cfg, options, 0, 1), UsageError);
  }
}

TEST_CASE("wall_clock_breakdown prints and records the time per part", "[reporter]") {
  TempDir dir("reporter_breakdown");
  const config::TrainConfig cfg = config::testing::train_from(
      config_yaml(", wall_clock_breakdown: true, csv_monitor: {enabled: true, output_path: " +
                  dir.path().string() + ", job_name: job}"));
  Capture out;
  ReportOptions options;
  options.stream = out.stream();
  options.peak_flops = 1e9;
  options.metrics_path = dir.file("m.jsonl");
  StepTimes times{0.2, 0.25, 0.04, 0.01};
  {
    Reporter reporter(cfg, options, 0, 1);
    drive(reporter, &times);
  }
  CHECK_THAT(out.text(),
             Contains("time per step (ms): forward 200.0 | backward 250.0 | optimizer 40.0 | "
                      "communication 10.0"));
  const auto records = read_jsonl(dir.file("m.jsonl"));
  CHECK(records[1]["time_ms"]["forward"] == Approx(200));
  std::ifstream forward(dir.path() / "job" / "Train_Samples_elapsed_time_ms_forward.csv");
  std::string header, first;
  std::getline(forward, header);
  std::getline(forward, first);
  CHECK(header == "step,elapsed_time_ms_forward\r");
  CHECK(first == "8,200.0\r");
}

TEST_CASE("monitors get DeepSpeed's events every step, counted in samples", "[reporter]") {
  TempDir dir("reporter_monitors");
  const std::string out_path = dir.path().string();
  const config::TrainConfig cfg = config::testing::train_from(
      config_yaml(", csv_monitor: {enabled: true, output_path: " + out_path +
                  ", job_name: run}, tensorboard: {enabled: true, output_path: " + out_path +
                  ", job_name: run}"));
  ReportOptions options;
  options.peak_flops = 1e9;
  Capture out;
  options.stream = out.stream();
  {
    Reporter reporter(cfg, options, 0, 1);
    drive(reporter);
  }
  const auto job = dir.path() / "run";
  std::ifstream loss(job / "Train_Samples_train_loss.csv");
  std::vector<std::string> rows;
  for (std::string line; std::getline(loss, line);) rows.push_back(line);
  REQUIRE(rows.size() == 21);
  CHECK(rows[0] == "step,train_loss\r");
  CHECK(rows[1] == "8,4.9\r");
  CHECK(rows[20] == "160,3.0\r");
  CHECK(std::filesystem::exists(job / "Train_Samples_lr.csv"));
  CHECK(std::filesystem::exists(job / "Train_Samples_eval_loss.csv"));
  CHECK(std::filesystem::exists(job / "Train_Samples_tokens_per_s.csv"));
  CHECK_FALSE(std::filesystem::exists(job / "Train_Samples_loss_scale.csv"));  // fp32
  int event_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(job)) {
    event_files += e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  }
  CHECK(event_files == 1);

  SECTION("only rank 0 writes monitors; other ranks write metrics only with {rank}") {
    TempDir other("reporter_rank1");
    ReportOptions o = options;
    o.metrics_path = other.file("shared.jsonl");
    const config::TrainConfig cfg1 = config::testing::train_from(
        config_yaml(", csv_monitor: {enabled: true, output_path: " + other.path().string() + "}"));
    {
      Reporter rank1(cfg1, o, 1, 2);
      drive(rank1);
    }
    CHECK_FALSE(std::filesystem::exists(other.file("shared.jsonl")));
    CHECK_FALSE(std::filesystem::exists(other.path() / "DeepSpeedJobName"));
    o.metrics_path = other.file("m{rank}.jsonl");
    {
      Reporter rank1(cfg1, o, 1, 2);
      drive(rank1);
    }
    CHECK(std::filesystem::exists(other.file("m1.jsonl")));
  }
}

}  // namespace
}  // namespace ds::worker
