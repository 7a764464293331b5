// dsworker: one rank of a training run; `dsworker validate` checks a config.
#include <CLI/CLI.hpp>
#include <iostream>

#include "util/error.h"
#include "util/log.h"
#include "util/version.h"
#include "worker/train_command.h"
#include "worker/validate_command.h"

int main(int argc, char** argv) {
  CLI::App app{"dsworker: train a transformer from a train.cfg (one rank of a run)", "dsworker"};
  app.set_version_flag("--version", std::string("dsworker ") + ds::kVersion);
  app.require_subcommand(0, 1);

  ds::worker::TrainOptions train;
  app.add_option("config", train.config, "train.cfg to train with");
  app.add_option("--metrics", train.metrics, "JSON-lines metrics file (overrides log.metrics)");
  app.add_option("--init-weights", train.init_weights,
                 "Start from these weights (safetensors, Hugging Face GPT-2 names)");
  app.add_option("--save-weights", train.save_weights,
                 "Write the final weights here (safetensors, Hugging Face GPT-2 names)");
  app.add_option("--steps", train.steps, "Override train.steps")->check(CLI::PositiveNumber);

  std::string validate_config;
  int64_t world_size = 1;
  CLI::App* validate = app.add_subcommand(
      "validate", "Load a train.cfg and print the fully resolved configuration as JSON");
  validate->add_option("config", validate_config, "train.cfg (.yaml, .yml, .cfg or .json)")
      ->required();
  validate->add_option("-n,--world-size", world_size, "Ranks in the run (default 1)")
      ->check(CLI::PositiveNumber);

  ds::log::set_prefix("dsworker");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (validate->parsed()) {
      ds::worker::validate_command(validate_config, world_size, std::cout);
      return 0;
    }
    if (train.config.empty()) {
      throw ds::UsageError("no train.cfg given", "usage: dsworker train.cfg (see --help)");
    }
    ds::worker::train_command(train);
    return 0;
  } catch (const ds::Error& e) {
    return ds::report_error("dsworker", e);
  }
}
