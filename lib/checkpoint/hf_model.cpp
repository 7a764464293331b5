#include "checkpoint/hf_model.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "checkpoint/weights_file.h"
#include "config/hf_config.h"
#include "util/error.h"
#include "util/files.h"

namespace ds::checkpoint {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::vector<fs::path> hf_weight_files(const fs::path& dir) {
  const fs::path index = dir / "model.safetensors.index.json";
  std::vector<fs::path> files;
  if (fs::exists(index)) {
    Json j;
    try {
      j = Json::parse(read_text_file(index));
    } catch (const Json::exception& e) {
      throw UsageError(fmt::format("{}: not JSON: {}", index.string(), e.what()));
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) {
      throw UsageError(fmt::format("{}: weight_map: missing or not an object", index.string()));
    }
    std::set<std::string> shards;
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      if (!file.is_string()) {
        throw UsageError(fmt::format("{}: weight_map.{}: not a file name", index.string(), tensor));
      }
      shards.insert(file.get<std::string>());
    }
    for (const std::string& shard : shards) {
      if (!fs::exists(dir / shard)) {
        throw UsageError(fmt::format("{}: the shard {} is missing", index.string(), shard),
                         "copy every file of the model folder");
      }
      files.push_back(dir / shard);
    }
    return files;
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  }
  if (ec)
    throw UsageError(fmt::format("{}: cannot read the folder: {}", dir.string(), ec.message()));
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    throw UsageError(fmt::format("{}: no *.safetensors weights", dir.string()),
                     "the folder needs model.safetensors (or shards with their index)");
  }
  return files;
}

void save_hf_model(const fs::path& dir, const config::ModelConfig& model,
                   const model::ModelLayout& layout, const float* flat, bool bf16,
                   int64_t shard_bytes) {
  fs::create_directories(dir);
  write_file_atomic(dir / "config.json",
                    config::hf_config_json(model, bf16 ? "bfloat16" : "float32").dump(2) + "\n");
  // Whole tensors into shards of at most shard_bytes (a larger tensor gets one of its own).
  const int64_t element = bf16 ? 2 : 4;
  std::vector<std::vector<int>> shards(1);
  int64_t filled = 0, total = 0;
  for (size_t i = 0; i < layout.params.size(); ++i) {
    const int64_t bytes = layout.params[i].numel * element;
    if (!shards.back().empty() && filled + bytes > shard_bytes) {
      shards.emplace_back();
      filled = 0;
    }
    shards.back().push_back(static_cast<int>(i));
    filled += bytes;
    total += bytes;
  }
  fs::remove(dir / "model.safetensors.index.json");
  if (shards.size() == 1) {
    save_weights(dir / "model.safetensors", layout, flat, bf16);
    return;
  }
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total}};
  nlohmann::ordered_json map = nlohmann::ordered_json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string name =
        fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
    save_weights(dir / name, layout, flat, bf16, shards[s]);
    for (int i : shards[s]) map[layout.params[i].name] = name;
  }
  index["weight_map"] = map;
  write_file_atomic(dir / "model.safetensors.index.json", index.dump(2) + "\n");
}

}  // namespace ds::checkpoint
