// train.cfg: the one file a run reads. Sections model, data, deepspeed, train,
// checkpoint and log (DESIGN.md); relative paths are resolved from the file's folder.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "config/ds_config.h"
#include "config/model_config.h"

namespace ds::config {

struct DataConfig {
  std::string train;  // a file or a glob of .bin shards, resolved
  std::string val;    // "" : the last val_fraction of train
  double val_fraction = 0.05;
  int64_t seq_len = 0;  // default: model.block_size
  bool shuffle = true;
  std::string format = "auto";  // auto | text | bin
};

enum class Device { kAuto, kCpu, kCuda };

struct TrainSection {
  int64_t steps = 1000;
  int64_t eval_every = 0;  // 0: no periodic eval
  int64_t eval_batches = 10;
  uint64_t seed = 1234;
  Device device = Device::kAuto;
};

struct CheckpointSection {
  std::string dir;  // "" : no checkpoints
  int64_t save_every = 0;
  std::string resume = "auto";  // auto | never | a tag
  int64_t keep = 3;             // 0: keep all
  std::string export_path;      // consolidated safetensors written at the end
  bool save_on_signal = false;  // save a checkpoint when SIGTERM/SIGINT stops the run
};

struct LogSection {
  std::string metrics;  // JSON-lines file; "{rank}" makes one per rank
  std::string level = "info";
};

struct TrainConfig {
  std::filesystem::path path;    // the train.cfg itself
  std::string deepspeed_source;  // the ds_config file, or "inline"
  ModelConfig model;
  DataConfig data;
  DsConfig ds;
  TrainSection train;
  CheckpointSection checkpoint;
  LogSection log;
};

// Loads, validates and resolves a train.cfg for a world of `world_size` ranks.
// Throws ConfigError (exit code 2) naming file, line, column and key path.
TrainConfig load_train_config(const std::filesystem::path& path, int64_t world_size = 1);
TrainConfig parse_train_config(DocumentPtr doc, int64_t world_size = 1);

}  // namespace ds::config
