#include "pipeline/partition.h"

#include <algorithm>
#include <limits>
#include <regex>

#include "util/error.h"

namespace ds::pipeline {
namespace {

constexpr std::string_view kTypeNames = "EmbeddingPipe, TransformerBlock, LMHead";

// Weight 1 for the layers whose type name matches `pattern`, as DeepSpeed's
// _find_layer_type does with regex.search(name, IGNORECASE).
std::vector<int64_t> type_weights(const model::ModelLayout& layout, const std::string& pattern) {
  std::regex re;
  try {
    re = std::regex(pattern, std::regex::ECMAScript | std::regex::icase);
  } catch (const std::regex_error& e) {
    throw UsageError(
        fmt::format("pipeline.partition: \"type:{}\" is not a valid regular expression ({})",
                    pattern, e.what()),
        fmt::format("the layer types are {}; e.g. type:transformer", kTypeNames));
  }
  std::vector<int64_t> weights;
  for (const model::LayerSpec& layer : layout.layers) {
    const std::string name(layer_type_name(layer.kind));
    weights.push_back(std::regex_search(name, re) ? 1 : 0);
  }
  if (std::count(weights.begin(), weights.end(), 1) == 0) {
    // DeepSpeed: "Partitioning '<regex>' found no valid layers to partition."
    throw UsageError(fmt::format("pipeline.partition: \"type:{}\" matches no layer type, so "
                                 "there are no layers to partition",
                                 pattern),
                     fmt::format("the layer types are {}; e.g. type:transformer", kTypeNames));
  }
  return weights;
}

}  // namespace

std::string_view layer_type_name(model::LayerKind kind) {
  switch (kind) {
    case model::LayerKind::kEmbedding:
      return "EmbeddingPipe";
    case model::LayerKind::kBlock:
      return "TransformerBlock";
    case model::LayerKind::kHead:
      return "LMHead";
  }
  return "Unknown";
}

std::vector<int> partition_uniform(int num_items, int num_parts) {
  DS_CHECK(num_items >= 0 && num_parts >= 1, "{} items in {} parts", num_items, num_parts);
  std::vector<int> parts(static_cast<size_t>(num_parts) + 1);
  if (num_items <= num_parts) {
    for (int p = 0; p <= num_parts; ++p) parts[p] = std::min(p, num_items);
    return parts;
  }
  // The first `residual` parts take one item more than the others.
  const int chunk = num_items / num_parts;
  const int residual = num_items - chunk * num_parts;
  for (int p = 0; p <= num_parts; ++p) parts[p] = p * chunk + std::min(p, residual);
  return parts;
}

std::vector<int> partition_balanced(std::span<const int64_t> weights, int num_parts) {
  DS_CHECK(num_parts >= 1, "{} parts", num_parts);
  const int n = static_cast<int>(weights.size());
  const int m = num_parts;
  if (n <= m) return partition_uniform(n, m);

  // Doubles with infinity for "not reached", as DeepSpeed's numpy tables: the tie-breaking
  // below compares against infinity exactly as it does. Parameter counts stay far below
  // 2^53, so the sums are exact.
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const auto cell = [m](int i, int j) { return static_cast<size_t>(i) * (m + 1) + j; };
  const size_t cells = static_cast<size_t>(n + 1) * (m + 1);
  std::vector<double> best_max(cells, kInf), best_min(cells, kInf), best_cost(cells, kInf);
  std::vector<int> split(cells, 0);
  std::vector<double> prefix(static_cast<size_t>(n) + 1, 0.0);
  for (int i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + static_cast<double>(weights[i]);

  // best_*[i][j]: the first i items in j runs, minimising heaviest minus lightest run; the
  // last run starts at split[i][j]. best_min[0][0] stays infinite so that the first run's
  // own sum is the lightest.
  best_max[cell(0, 0)] = 0;
  best_cost[cell(0, 0)] = 0;
  for (int i = 1; i <= n; ++i) {
    for (int j = 1; j <= std::min(i, m); ++j) {
      for (int k = 0; k < i; ++k) {
        const double run = prefix[i] - prefix[k];
        const double hi = std::max(best_max[cell(k, j - 1)], run);
        const double lo = std::min(best_min[cell(k, j - 1)], run);
        const double cost = hi - lo;
        // `>=`: a later split wins a tie, as in DeepSpeed.
        if (best_cost[cell(i, j)] >= cost) {
          best_cost[cell(i, j)] = cost;
          best_max[cell(i, j)] = hi;
          best_min[cell(i, j)] = lo;
          split[cell(i, j)] = k;
        }
      }
    }
  }
  std::vector<int> parts(static_cast<size_t>(m) + 1);
  parts[m] = n;
  for (int j = m; j >= 1; --j) parts[j - 1] = split[cell(parts[j], j)];
  return parts;
}

int64_t layer_parameter_count(const model::ModelLayout& layout, int layer) {
  const model::LayerSpec& spec = layout.layers.at(static_cast<size_t>(layer));
  int64_t count = 0;
  for (int p = spec.first_param; p < spec.first_param + spec.num_params; ++p) {
    count += layout.params[static_cast<size_t>(p)].numel;
  }
  return count;
}

int StagePartition::first_layer(int stage) const {
  DS_CHECK(stage >= 0 && stage < num_stages(), "stage {} of {}", stage, num_stages());
  return parts[stage];
}

int StagePartition::last_layer(int stage) const {
  DS_CHECK(stage >= 0 && stage < num_stages(), "stage {} of {}", stage, num_stages());
  return parts[stage + 1] - 1;
}

int StagePartition::num_layers(int stage) const {
  DS_CHECK(stage >= 0 && stage < num_stages(), "stage {} of {}", stage, num_stages());
  return parts[stage + 1] - parts[stage];
}

int StagePartition::stage_of_layer(int layer) const {
  DS_CHECK(!parts.empty() && layer >= parts.front() && layer < parts.back(),
           "layer {} is outside the partition", layer);
  // The last boundary <= layer; an empty stage shares its boundary with the next one.
  const auto it = std::upper_bound(parts.begin(), parts.end(), layer);
  return static_cast<int>(it - parts.begin()) - 1;
}

std::string partition_method_name(const config::PipelineConfig& pipeline) {
  switch (pipeline.partition) {
    case config::PartitionMethod::kParameters:
      return "parameters";
    case config::PartitionMethod::kUniform:
      return "uniform";
    case config::PartitionMethod::kType:
      return fmt::format("type:{}", pipeline.partition_type_regex);
  }
  return "?";
}

StagePartition partition_layers(const model::ModelLayout& layout,
                                const config::PipelineConfig& pipeline) {
  const int num_layers = static_cast<int>(layout.layers.size());
  const int stages = static_cast<int>(pipeline.stages);
  DS_CHECK(stages >= 1, "{} pipeline stages", stages);

  std::vector<int64_t> weights;
  switch (pipeline.partition) {
    case config::PartitionMethod::kUniform:
      weights.assign(layout.layers.size(), 1);
      break;
    case config::PartitionMethod::kParameters:
      for (int l = 0; l < num_layers; ++l) weights.push_back(layer_parameter_count(layout, l));
      break;
    case config::PartitionMethod::kType:
      weights = type_weights(layout, pipeline.partition_type_regex);
      break;
  }
  // DeepSpeed would go on and leave a stage with nothing to train (or no layer at all),
  // which fails later and far from the cause.
  const auto weighted =
      std::count_if(weights.begin(), weights.end(), [](int64_t w) { return w > 0; });
  if (weighted < stages) {
    const bool by_type = pipeline.partition == config::PartitionMethod::kType;
    throw UsageError(
        by_type ? fmt::format("pipeline.partition: \"{}\" matches only {} layer{} but there are "
                              "{} pipeline stages, so some stage would get nothing to train",
                              partition_method_name(pipeline), weighted, weighted == 1 ? "" : "s",
                              stages)
                : fmt::format("pipeline.partition: {} pipeline stages but the model has only {} "
                              "layers to partition",
                              stages, weighted),
        by_type ? fmt::format("use a type regex that matches at least {} layers (types: {}), "
                              "e.g. type:transformer, or partition: parameters",
                              stages, kTypeNames)
                : fmt::format("use at most {} pipeline stages", weighted));
  }

  StagePartition result;
  result.parts = pipeline.partition == config::PartitionMethod::kUniform
                     ? partition_uniform(num_layers, stages)
                     : partition_balanced(weights, stages);
  return result;
}

}  // namespace ds::pipeline
