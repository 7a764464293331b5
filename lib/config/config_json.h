// The fully resolved configuration as JSON: what `dsworker validate` prints and
// what checkpoints record. Keys are DeepSpeed's own names under "deepspeed".
#pragma once

#include <nlohmann/json.hpp>

#include "config/train_config.h"

namespace ds::config {

nlohmann::ordered_json to_json(const DsConfig& ds);
nlohmann::ordered_json to_json(const ModelConfig& model);
nlohmann::ordered_json to_json(const TrainConfig& cfg);

// The model back from to_json's form (as checkpoints record it).
ModelConfig model_from_json(const nlohmann::json& j);

}  // namespace ds::config
