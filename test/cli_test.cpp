// The programs as a user runs them: exit codes, stdout and stderr.
#include <catch2/catch.hpp>
#include <string>

#include "process_helpers.h"

using Catch::Matchers::Contains;

using ds::testing::kBin;
using ds::testing::run;
using ds::testing::Run;

namespace {

const std::string kConfigs = ds::testing::kSource + "/configs/";

std::string temp_file(const std::string& name, const std::string& text) {
  static const ds::testing::TempDir dir("dstrain_cli_test");
  return dir.write(name, text);
}

}  // namespace

TEST_CASE("help and version flags", "[cli]") {
  for (const char* program : {"dsworker", "dslaunch"}) {
    INFO(program);
    Run r = run(kBin + program + " --help");
    CHECK(r.code == 0);
    CHECK_THAT(r.out, Contains("Usage"));
    r = run(kBin + program + " --version");
    CHECK(r.code == 0);
    CHECK_THAT(r.out, Contains(std::string(program) + " 0."));
  }
  CHECK_THAT(run(kBin + "dslaunch --help").out, Contains("--hostfile"));
  CHECK_THAT(run(kBin + "dsworker validate --help").out, Contains("--world-size"));
}

TEST_CASE("validate prints the resolved config as JSON", "[cli]") {
  const Run r = run(kBin + "dsworker validate " + kConfigs + "gpt2-124m-zero2-bf16.yaml -n 8");
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("\"gradient_accumulation_steps\": 2"));
  CHECK_THAT(r.out, Contains("\"stage\": 2"));
}

TEST_CASE("bad configs exit 2 with the position on stderr", "[cli]") {
  const std::string ds = temp_file("bad_ds.json",
                                   "{\n  \"train_batch_size\": 4,\n"
                                   "  \"zero_optimization\": {\"stage\": 4}\n}\n");
  const std::string cfg =
      temp_file("bad.yaml", "model: gpt-tiny\ndata: {train: x.txt}\ndeepspeed: bad_ds.json\n");
  const Run r = run(kBin + "dsworker validate " + cfg);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("dsworker: error: "));
  CHECK_THAT(r.out, Contains("bad_ds.json:3:"));
  CHECK_THAT(r.out, Contains("zero_optimization.stage"));
}

TEST_CASE("missing files and bad usage exit 2", "[cli]") {
  Run r = run(kBin + "dsworker validate /nonexistent/train.yaml");
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("/nonexistent/train.yaml"));
  r = run(kBin + "dsworker validate " + temp_file("notes.txt", "x"));
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains(".yaml, .yml, .cfg or .json"));
  r = run(kBin + "dsworker validate " + kConfigs + "tiny.yaml --world-size 0");
  CHECK(r.code != 0);
  r = run(kBin + "dslaunch --num_gpus 0 x.yaml");
  CHECK(r.code == 2);
  r = run(kBin + "dslaunch");
  CHECK(r.code != 0);
}

TEST_CASE("a missing ds_config file is named with the train.cfg key", "[cli]") {
  const std::string cfg =
      temp_file("no_ds.yaml", "model: gpt-tiny\ndata: {train: x.txt}\ndeepspeed: nowhere.json\n");
  const Run r = run(kBin + "dsworker validate " + cfg);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("no_ds.yaml:3:"));
  CHECK_THAT(r.out, Contains("nowhere.json"));
}
