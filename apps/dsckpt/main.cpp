// dsckpt: inspect, verify and export dstrain checkpoints.
#include <CLI/CLI.hpp>
#include <iostream>

#include "checkpoint/dsckpt.h"
#include "util/error.h"
#include "util/version.h"

int main(int argc, char** argv) {
  CLI::App app{"dsckpt: inspect, verify and export dstrain checkpoints", "dsckpt"};
  app.set_version_flag("--version", std::string("dsckpt ") + ds::kVersion);
  app.require_subcommand(1);

  std::string dir, tag, out_file, dtype = "f32";
  CLI::App* inspect = app.add_subcommand("inspect", "Tags, steps, layout, sizes and config");
  inspect->add_option("dir", dir, "Checkpoint folder (checkpoint.dir)")->required();
  CLI::App* verify = app.add_subcommand("verify", "Check completeness and checksums of a tag");
  verify->add_option("dir", dir, "Checkpoint folder")->required();
  verify->add_option("--tag", tag, "Tag (default: latest)");
  CLI::App* exporter = app.add_subcommand(
      "export", "Write consolidated weights as safetensors with Hugging Face GPT-2 names");
  exporter->add_option("dir", dir, "Checkpoint folder")->required();
  exporter->add_option("--tag", tag, "Tag (default: latest)");
  exporter->add_option("-o,--out", out_file, "Output .safetensors file")->required();
  exporter->add_option("--dtype", dtype, "f32 or bf16")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (inspect->parsed()) ds::checkpoint::inspect_command(dir, std::cout);
    if (verify->parsed()) return ds::checkpoint::verify_command(dir, tag, std::cout);
    if (exporter->parsed()) ds::checkpoint::export_command(dir, tag, out_file, dtype, std::cout);
    return 0;
  } catch (const ds::Error& e) {
    return ds::report_error("dsckpt", e);
  }
}
