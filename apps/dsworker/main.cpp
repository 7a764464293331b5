// dsworker: one rank of a training run; `dsworker validate` checks a config.
#include <CLI/CLI.hpp>
#include <iostream>

#include "util/error.h"
#include "util/log.h"
#include "util/version.h"
#include "worker/validate_command.h"

int main(int argc, char** argv) {
  CLI::App app{"dsworker: train a transformer from a train.cfg (one rank of a run)", "dsworker"};
  app.set_version_flag("--version", std::string("dsworker ") + ds::kVersion);
  app.require_subcommand(0, 1);

  std::string config;
  app.add_option("config", config, "train.cfg to train with");

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
    if (config.empty()) {
      throw ds::UsageError("no train.cfg given", "usage: dsworker train.cfg (see --help)");
    }
    throw ds::Error("training is not implemented yet in this build",
                    "check a config with: dsworker validate " + config);
  } catch (const ds::Error& e) {
    return ds::report_error("dsworker", e);
  }
}
