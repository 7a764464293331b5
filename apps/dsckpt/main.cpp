// dsckpt: inspect, verify and export dstrain checkpoints.
#include <CLI/CLI.hpp>
#include <iostream>

#include "checkpoint/dsckpt.h"
#include "util/error.h"
#include "util/strings.h"
#include "util/version.h"

int main(int argc, char** argv) {
  CLI::App app{"dsckpt: inspect, verify and export dstrain checkpoints", "dsckpt"};
  app.set_version_flag("--version", std::string("dsckpt ") + ds::kVersion);
  app.require_subcommand(1);

  std::string dir, tag, out_file, dtype = "f32", format = "safetensors";
  std::string max_shard_size = "5GB";
  CLI::App* inspect = app.add_subcommand("inspect", "Tags, steps, layout, sizes and config");
  inspect->add_option("dir", dir, "Checkpoint folder (checkpoint.dir)")->required();
  CLI::App* verify = app.add_subcommand("verify", "Check completeness and checksums of a tag");
  verify->add_option("dir", dir, "Checkpoint folder")->required();
  verify->add_option("--tag", tag, "Tag (default: latest)");
  CLI::App* exporter = app.add_subcommand(
      "export", "Write consolidated weights with Hugging Face names (a file, or a model folder)");
  exporter->add_option("dir", dir, "Checkpoint folder")->required();
  exporter->add_option("--tag", tag, "Tag (default: latest)");
  exporter->add_option("-o,--out", out_file, "Output .safetensors file (a folder with --format hf)")
      ->required();
  exporter->add_option("--dtype", dtype, "f32 or bf16")->capture_default_str();
  exporter
      ->add_option("--format", format,
                   "safetensors (one file) or hf (config.json + weights for from_pretrained)")
      ->capture_default_str();
  exporter
      ->add_option("--max-shard-size", max_shard_size,
                   "hf: the largest weight file before sharding (5GB, 500MB, 2GiB, ...)")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (inspect->parsed()) ds::checkpoint::inspect_command(dir, std::cout);
    if (verify->parsed()) return ds::checkpoint::verify_command(dir, tag, std::cout);
    if (exporter->parsed()) {
      const auto shard_bytes = ds::parse_byte_size(max_shard_size);
      if (!shard_bytes || *shard_bytes <= 0) {
        throw ds::UsageError(fmt::format("--max-shard-size {} is not a size", max_shard_size),
                             "e.g. 5GB, 500MB or 2GiB");
      }
      ds::checkpoint::export_command(dir, tag, out_file, dtype, format, *shard_bytes, std::cout);
    }
    return 0;
  } catch (const ds::Error& e) {
    return ds::report_error("dsckpt", e);
  }
}
