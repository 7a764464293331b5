#include "pipeline/plan_report.h"

#include <fmt/format.h>

#include <ostream>

#include "pipeline/partition.h"
#include "pipeline/schedule.h"

namespace ds::pipeline {
namespace {

// 1234567 -> "1,234,567": parameter counts of GPT-2 sizes are unreadable otherwise.
std::string grouped(int64_t n) {
  const std::string digits = std::to_string(n);
  std::string text;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && digits[i - 1] != '-' && (digits.size() - i) % 3 == 0) text += ',';
    text += digits[i];
  }
  return text;
}

// "embedding, h.0-h.3": consecutive blocks as one range.
std::string layer_summary(const model::ModelLayout& layout, int first, int last) {
  std::string text;
  for (int l = first; l <= last; ++l) {
    const model::LayerSpec& layer = layout.layers[static_cast<size_t>(l)];
    int run_end = l;
    if (layer.kind == model::LayerKind::kBlock) {
      while (run_end < last &&
             layout.layers[static_cast<size_t>(run_end) + 1].kind == model::LayerKind::kBlock) {
        ++run_end;
      }
    }
    if (!text.empty()) text += ", ";
    text += run_end == l ? layer.name
                         : fmt::format("{}-{}", layer.name,
                                       layout.layers[static_cast<size_t>(run_end)].name);
    l = run_end;
  }
  return text;
}

}  // namespace

void print_pipeline_plan(const config::TrainConfig& config, std::ostream& out) {
  const config::PipelineConfig& pipe = config.ds.pipeline;
  const model::ModelLayout layout = model::build_layout(config.model);
  const StagePartition partition = partition_layers(layout, pipe);
  const int stages = partition.num_stages();
  const int micro_batches = static_cast<int>(config.ds.batch.gradient_accumulation_steps);

  out << fmt::format(
      "pipeline: {} stage{} x {} data-parallel, {} micro-batches of {}, partition={}\n", stages,
      stages == 1 ? "" : "s", config.ds.batch.dp_size, micro_batches,
      config.ds.batch.micro_batch_per_gpu, partition_method_name(pipe));
  for (int stage = 0; stage < stages; ++stage) {
    const int first = partition.first_layer(stage), last = partition.last_layer(stage);
    int64_t params = 0;
    for (int l = first; l <= last; ++l) params += layer_parameter_count(layout, l);
    const int buffers = train_num_pipe_buffers(micro_batches, stages, stage);
    out << fmt::format("stage {}: layers {} ({} params); {} buffers\n", stage,
                       layer_summary(layout, first, last), grouped(params), buffers);
    for (int l = first; l <= last; ++l) {
      const model::LayerSpec& layer = layout.layers[static_cast<size_t>(l)];
      out << fmt::format("  layer {:>2}: {:<10} {:<17} {:>13} params\n", l, layer.name,
                         layer_type_name(layer.kind), grouped(layer_parameter_count(layout, l)));
    }
    const std::vector<Step> steps = train_schedule(micro_batches, stages, stage);
    for (size_t s = 0; s < steps.size(); ++s) {
      std::string line = fmt::format("  step {:>2}:", s);
      if (steps[s].empty()) line += " (idle)";
      for (const Instruction& i : steps[s]) {
        line += ' ';
        line += to_string(i);
      }
      out << line << '\n';
    }
  }
}

}  // namespace ds::pipeline
