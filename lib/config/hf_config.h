// Hugging Face model folders: their config.json as a ModelConfig and back, for the two
// architectures dstrain trains (LlamaForCausalLM and GPT2LMHeadModel).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

#include "config/model_config.h"

namespace ds::config {

// Reads DIR/config.json. Throws ds::UsageError (exit 2) naming the file and the key for
// an architecture other than those two, a setting dstrain does not implement
// (attention biases, another activation or rope type, a head_dim other than
// hidden_size / num_attention_heads) or a malformed file.
ModelConfig read_hf_config(const std::filesystem::path& dir);

// The config.json that transformers' from_pretrained reads for `model` (`dtype`: the
// torch_dtype of the weights written beside it, "float32" or "bfloat16").
nlohmann::ordered_json hf_config_json(const ModelConfig& model, const std::string& dtype);

}  // namespace ds::config
