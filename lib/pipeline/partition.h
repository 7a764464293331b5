// Splitting the model's layer list into pipeline stages, as DeepSpeed's
// PipelineModule._partition_layers does (deepspeed/runtime/pipe/module.py) with
// ds_utils.partition_uniform and partition_balanced (deepspeed/runtime/utils.py).
//
// A partition is DeepSpeed's `parts`: S+1 boundaries, stage s owning layers
// [parts[s], parts[s+1]). The same split on every rank, computed from the config alone.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/ds_config.h"
#include "model/model_layout.h"

namespace ds::pipeline {

// The type name `partition: type:REGEX` is matched against (case-insensitively, anywhere
// in the name): "EmbeddingPipe", "TransformerBlock", "LMHead".
std::string_view layer_type_name(model::LayerKind kind);

// DeepSpeed's partition_uniform: `num_items` in `num_parts` contiguous runs whose sizes
// differ by at most one, the longer runs first. With no more items than parts, part p
// holds item p and the rest are empty.
std::vector<int> partition_uniform(int num_items, int num_parts);

// DeepSpeed's partition_balanced: contiguous runs of `weights` that minimise the spread
// (heaviest run minus lightest) by dynamic programming over the linear partition problem;
// ties go to the split that puts the last boundary furthest right. Falls back to
// partition_uniform when there are no more weights than parts.
std::vector<int> partition_balanced(std::span<const int64_t> weights, int num_parts);

// Trainable parameters of one layer (without alignment padding).
int64_t layer_parameter_count(const model::ModelLayout& layout, int layer);

struct StagePartition {
  std::vector<int> parts;  // num_stages() + 1 layer boundaries, parts[0] = 0

  int num_stages() const { return static_cast<int>(parts.size()) - 1; }
  int first_layer(int stage) const;  // stage's layers are [first_layer, last_layer]
  int last_layer(int stage) const;
  int num_layers(int stage) const;
  int stage_of_layer(int layer) const;
};

// Splits `layout.layers` into `pipeline.stages` stages with `pipeline.partition`. Throws
// ds::UsageError naming pipeline.partition when a type regex is invalid or matches no layer,
// or when fewer layers carry weight than there are stages. (That the world size is a multiple
// of the stages is checked where the config is read.)
StagePartition partition_layers(const model::ModelLayout& layout,
                                const config::PipelineConfig& pipeline);

// "parameters", "uniform" or "type:REGEX", as the config spells it.
std::string partition_method_name(const config::PipelineConfig& pipeline);

}  // namespace ds::pipeline
