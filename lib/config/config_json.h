// The fully resolved configuration as JSON: what `dsworker validate` prints and
// what checkpoints record. Keys are DeepSpeed's own names under "deepspeed".
#pragma once

#include <nlohmann/json.hpp>

#include "config/train_config.h"

namespace ds::config {

nlohmann::ordered_json to_json(const DsConfig& ds);
nlohmann::ordered_json to_json(const ModelConfig& model);
nlohmann::ordered_json to_json(const TrainConfig& cfg);

}  // namespace ds::config
