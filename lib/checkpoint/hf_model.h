// Hugging Face model folders: config.json plus model.safetensors, or shards listed by
// model.safetensors.index.json — read to start a run (`model: {from_hf: DIR}`) and written
// by `dsckpt export --format hf`, so that transformers' from_pretrained loads the result.
#pragma once

#include <filesystem>
#include <vector>

#include "config/model_config.h"
#include "model/model_layout.h"

namespace ds::checkpoint {

// The weight files of a folder, in reading order: the shards its index names (each must
// exist: a missing one is a UsageError naming it), else every *.safetensors file.
std::vector<std::filesystem::path> hf_weight_files(const std::filesystem::path& dir);

// Writes config.json and the weights into `dir` (created): one model.safetensors, or
// model-0000i-of-0000n.safetensors shards of at most `shard_bytes` each (whole tensors)
// with model.safetensors.index.json when the weights are larger.
void save_hf_model(const std::filesystem::path& dir, const config::ModelConfig& model,
                   const model::ModelLayout& layout, const float* flat, bool bf16,
                   int64_t shard_bytes = int64_t{5} << 30);

}  // namespace ds::checkpoint
