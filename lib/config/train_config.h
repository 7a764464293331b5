// train.cfg: the one file a run reads. Sections model, data, deepspeed, train,
// checkpoint and log (DESIGN.md); relative paths are resolved from the file's folder.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/ds_config.h"
#include "config/model_config.h"

namespace ds::config {

// A text template: literal text and {field} references ("{{" and "}}" are literal braces),
// parsed when the config is read so that syntax errors point into train.cfg.
struct TemplatePiece {
  std::string text;  // literal text, or the field name when is_field
  bool is_field = false;
};
struct TextTemplate {
  std::string source;  // as written
  std::vector<TemplatePiece> pieces;
};

// data.template: how one JSON-lines record becomes a prompt and a response. Each part is
// a list of alternatives; the first whose every field is present as a non-empty string is
// used, the last one always (a missing field there is an error).
struct DataTemplate {
  std::vector<TextTemplate> prompt;    // empty: no prompt part
  std::vector<TextTemplate> response;  // at least one
};

struct DataConfig {
  std::string train;  // a file or a glob of .bin shards, resolved
  std::string val;    // "" : the last val_fraction of train
  double val_fraction = 0.05;
  int64_t seq_len = 0;  // default: model.block_size
  bool shuffle = true;
  std::string format = "auto";  // auto | text | bin | jsonl
  // A Hugging Face tokenizer.json, resolved; "" : bytes. Defaults to model.from_hf's
  // tokenizer.json when that folder has one.
  std::string tokenizer;
  bool tokenizer_from_model = false;          // tokenizer is the model folder's, not data.tokenizer
  std::string field;                          // jsonl: the string field holding a document ("text")
  std::optional<DataTemplate> text_template;  // jsonl: data.template instead of field
  bool mask_prompt = false;                   // the prompt part's targets are ignored
  bool packing = true;                        // false: one sample (or more) per document
  bool cache = true;                          // keep tokenised data beside the data file
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
