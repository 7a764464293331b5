// dsworker on instruction data end to end: llama-tiny learns from a JSON-lines file with
// an Alpaca-style template and mask_prompt, the token cache is written and reused, and
// bad records stop the run with exit code 2 naming the file and line.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "process_helpers.h"

using Catch::Matchers::Contains;
using ds::testing::kBin;
using ds::testing::metric_values;
using ds::testing::run;
using ds::testing::Run;
using ds::testing::TempDir;

namespace {

std::string instructions(int count) {
  std::string out;
  const char* words[] = {"apple", "river", "stone", "cloud", "maple", "tiger", "amber", "flute"};
  for (int i = 0; i < count; ++i) {
    const std::string w = words[i % 8];
    const std::string input = i % 3 == 0 ? "" : std::to_string(i % 5);
    out += fmt::format(
        R"({{"instruction": "Repeat the word {}", "input": "{}", "output": "{} {} {}"}})"
        "\n",
        w, input, w, w, w);
  }
  return out;
}

std::string config(const std::string& data_file) {
  return "model: llama-tiny\n"
         "data:\n"
         "  train: " +
         data_file +
         "\n"
         "  seq_len: 32\n"
         "  mask_prompt: true\n"
         "  template:\n"
         "    prompt: [\"### Instruction:\\n{instruction}\\n\\n### Input:\\n{input}\\n\\n"
         "### Response:\\n\", \"### Instruction:\\n{instruction}\\n\\n### Response:\\n\"]\n"
         "    response: \"{output}\"\n"
         "deepspeed: {train_micro_batch_size_per_gpu: 8, gradient_accumulation_steps: 1,\n"
         "  steps_per_print: 1, optimizer: {type: AdamW, params: {lr: 0.01}}}\n"
         "train: {steps: 30, eval_every: 30, eval_batches: 2, seed: 3}\n";
}

}  // namespace

TEST_CASE("dsworker trains llama-tiny on instruction data with mask_prompt", "[train][data]") {
  TempDir dir("dstrain_data_instruct");
  dir.write("train.jsonl", instructions(200));
  const std::string cfg = dir.write("train.yaml", config("train.jsonl"));
  const Run a = run(kBin + "dsworker " + cfg + " --metrics " + dir.file("a.jsonl"));
  INFO(a.out);
  REQUIRE(a.code == 0);
  CHECK_THAT(a.out, Contains("tokenised"));
  const auto loss = metric_values(dir.file("a.jsonl"), "loss");
  REQUIRE(loss.size() == 30);
  const double first = (loss[0] + loss[1] + loss[2]) / 3;
  const double last = (loss[27] + loss[28] + loss[29]) / 3;
  CHECK(last < first * 0.7);
  CHECK(metric_values(dir.file("a.jsonl"), "val_loss").size() == 1);

  // The second run reads the cache instead of tokenising again.
  const Run b = run(kBin + "dsworker " + cfg + " --steps 1 --metrics " + dir.file("b.jsonl"));
  INFO(b.out);
  REQUIRE(b.code == 0);
  CHECK_THAT(b.out, Contains("from the cache"));
  CHECK(metric_values(dir.file("b.jsonl"), "loss").front() == loss.front());
}

TEST_CASE("dsworker stops on a bad instruction record with exit code 2", "[train][data]") {
  TempDir dir("dstrain_data_instruct_bad");
  dir.write("train.jsonl", instructions(20) + "{\"instruction\": \"x\", \"input\": \"\"}\n");
  const std::string cfg = dir.write("train.yaml", config("train.jsonl"));
  const Run r = run(kBin + "dsworker " + cfg);
  INFO(r.out);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("train.jsonl' line 21") && Contains("no field 'output'"));

  const std::string unclosed =
      dir.write("unclosed.yaml",
                "model: llama-tiny\n"
                "data: {train: train.jsonl, template: {response: \"{output\"}}\n"
                "deepspeed: {train_micro_batch_size_per_gpu: 1}\n");
  const Run u = run(kBin + "dsworker " + unclosed);
  INFO(u.out);
  CHECK(u.code == 2);
  CHECK_THAT(u.out, Contains("unclosed.yaml:2:") && Contains("not closed"));
}
