// The model description: a preset name, a path to a description file, or a map
// (optionally `preset:` plus overrides). Expanded into layers by lib/model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/reader.h"

namespace ds::config {

// Llama 3's rope_scaling ("rope_type": "llama3"): long wavelengths stretched by
// `factor`, short ones kept, a smooth blend between.
struct RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string preset;        // the preset it started from, if any
  std::string arch = "gpt";  // "gpt" (GPT-2) or "llama"
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t n_embd = 128;
  int64_t vocab_size = 256;
  int64_t block_size = 128;  // longest context
  bool tie_embeddings = true;
  double layer_norm_epsilon = 1e-5;  // GPT's LayerNorm; Llama's RMSNorm (rms_norm_eps)
  // Llama only.
  int64_t n_kv_head = 0;          // grouped-query attention: key/value heads (0: n_head)
  int64_t intermediate_size = 0;  // SwiGLU width (0: Llama's rule from n_embd)
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  // model: {from_hf: DIR}: the Hugging Face folder the shape came from, whose weights
  // (*.safetensors) a run starts from.
  std::string hf_dir;

  bool llama() const { return arch == "llama"; }
  int64_t kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  int64_t mlp_width() const;  // GPT: 4 n_embd; Llama: intermediate_size

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
