// The model description: a preset name, a path to a description file, or a map
// (optionally `preset:` plus overrides). Expanded into layers by lib/model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/reader.h"

namespace ds::config {

struct ModelConfig {
  std::string preset;  // the preset it started from, if any
  std::string arch = "gpt";
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t n_embd = 128;
  int64_t vocab_size = 256;
  int64_t block_size = 128;  // longest context
  bool tie_embeddings = true;
  double layer_norm_epsilon = 1e-5;

  // Trainable parameters, counting a tied embedding once.
  int64_t parameter_count() const;
};

// The named presets, in a stable order.
const std::vector<std::string>& model_preset_names();

// Reads the `model:` value of a train.cfg (string or map) at `key` of `parent`.
ModelConfig parse_model(MapReader& parent, const std::string& key);
// Reads a model map: optional `preset:` then any field overriding it.
ModelConfig parse_model_map(MapReader& map);

}  // namespace ds::config
