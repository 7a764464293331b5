// Stage partitioning against DeepSpeed's ds_utils.partition_uniform / partition_balanced and
// PipelineModule._partition_layers. Expected values are what DeepSpeed's own functions return
// for the same inputs (deepspeed/runtime/utils.py, the dynamic-programming partition_balanced
// of v0.12.5 and later); the small cases are also in its
// tests/unit/utils/test_partition_balanced.py.
#include <catch2/catch.hpp>
#include <numeric>

#include "config_helpers.h"
#include "pipeline/partition.h"
#include "util/error.h"

using ds::pipeline::partition_balanced;
using ds::pipeline::partition_layers;
using ds::pipeline::partition_uniform;
using ds::pipeline::StagePartition;
using Parts = std::vector<int>;
using Weights = std::vector<int64_t>;

namespace {

ds::config::TrainConfig config_for(const std::string& model, int stages,
                                   const std::string& partition) {
  const std::string yaml = fmt::format(
      "model: {}\ndata: {{train: x.txt}}\n"
      "deepspeed: {{train_micro_batch_size_per_gpu: 1, gradient_accumulation_steps: 4, "
      "pipeline: {{stages: {}, partition: \"{}\"}}}}\n",
      model, stages, partition);
  return ds::config::testing::train_from(yaml, stages);
}

Parts parts_for(const std::string& model, int stages, const std::string& partition) {
  const ds::config::TrainConfig cfg = config_for(model, stages, partition);
  return partition_layers(ds::model::build_layout(cfg.model), cfg.ds.pipeline).parts;
}

// The spread DeepSpeed's test measures: heaviest part minus lightest.
int64_t spread(const Weights& w, const Parts& parts) {
  std::vector<int64_t> sums;
  for (size_t p = 0; p + 1 < parts.size(); ++p) {
    sums.push_back(std::accumulate(w.begin() + parts[p], w.begin() + parts[p + 1], int64_t{0}));
  }
  const auto [lo, hi] = std::minmax_element(sums.begin(), sums.end());
  return *hi - *lo;
}

ds::UsageError usage_error_of(const std::string& model, int stages, const std::string& partition) {
  try {
    (void)parts_for(model, stages, partition);
  } catch (const ds::UsageError& e) {
    return e;
  }
  FAIL("expected a UsageError");
  return ds::UsageError("");
}

}  // namespace

TEST_CASE("pipeline partition: partition_uniform gives the first parts the remainder",
          "[pipeline][partition]") {
  CHECK(partition_uniform(10, 3) == Parts{0, 4, 7, 10});
  CHECK(partition_uniform(12, 5) == Parts{0, 3, 6, 8, 10, 12});
  CHECK(partition_uniform(7, 2) == Parts{0, 4, 7});
  CHECK(partition_uniform(4, 4) == Parts{0, 1, 2, 3, 4});
  // No more items than parts: one each, then empty parts.
  CHECK(partition_uniform(3, 5) == Parts{0, 1, 2, 3, 3, 3});
  CHECK(partition_uniform(0, 2) == Parts{0, 0, 0});
  CHECK(partition_uniform(5, 1) == Parts{0, 5});
}

TEST_CASE("pipeline partition: partition_balanced matches DeepSpeed's results",
          "[pipeline][partition]") {
  // DeepSpeed's unit test cases, with the spread it asserts.
  CHECK(partition_balanced(Weights{1, 2, 1}, 4) == Parts{0, 1, 2, 3, 3});
  CHECK(partition_balanced(Weights{1, 1, 1, 1}, 4) == Parts{0, 1, 2, 3, 4});
  CHECK(partition_balanced(Weights{1, 1, 1, 1, 1}, 4) == Parts{0, 2, 3, 4, 5});
  CHECK(spread({1, 1, 1, 1, 1}, partition_balanced(Weights{1, 1, 1, 1, 1}, 4)) == 1);
  CHECK(partition_balanced(Weights{1, 1, 1, 1, 0, 1}, 4) == Parts{0, 2, 3, 5, 6});
  CHECK(spread({1, 1, 1, 1, 0, 1}, partition_balanced(Weights{1, 1, 1, 1, 0, 1}, 4)) == 1);
  // Ties go to the later boundary; the objective is the spread, not the heaviest part.
  CHECK(partition_balanced(Weights{3, 3, 3}, 2) == Parts{0, 2, 3});
  CHECK(partition_balanced(Weights{1, 1, 1, 1}, 2) == Parts{0, 2, 4});
  CHECK(partition_balanced(Weights{5, 1, 1, 1, 1, 5}, 2) == Parts{0, 3, 6});
  CHECK(partition_balanced(Weights{1, 2, 3, 4, 5, 6, 7, 8, 9}, 3) == Parts{0, 5, 7, 9});
  CHECK(partition_balanced(Weights{0, 0, 0, 1}, 2) == Parts{0, 3, 4});
  CHECK(partition_balanced(Weights{7}, 1) == Parts{0, 1});
}

TEST_CASE("pipeline partition: layer type names and parameter counts of the layout",
          "[pipeline][partition]") {
  const auto cfg = config_for("gpt2-124m", 1, "parameters");
  const auto layout = ds::model::build_layout(cfg.model);
  REQUIRE(layout.layers.size() == 14);
  CHECK(ds::pipeline::layer_type_name(layout.layers[0].kind) == "EmbeddingPipe");
  CHECK(ds::pipeline::layer_type_name(layout.layers[1].kind) == "TransformerBlock");
  CHECK(ds::pipeline::layer_type_name(layout.layers[13].kind) == "LMHead");
  // wte + wpe; 12 C^2 + 13 C per block; the head is ln_f alone (lm_head is tied to wte).
  CHECK(ds::pipeline::layer_parameter_count(layout, 0) == 50257 * 768 + 1024 * 768);
  CHECK(ds::pipeline::layer_parameter_count(layout, 5) == 12 * 768 * 768 + 13 * 768);
  CHECK(ds::pipeline::layer_parameter_count(layout, 13) == 2 * 768);
}

TEST_CASE("pipeline partition: the three methods on gpt2-124m", "[pipeline][partition]") {
  CHECK(parts_for("gpt2-124m", 1, "parameters") == Parts{0, 14});
  CHECK(parts_for("gpt2-124m", 2, "uniform") == Parts{0, 7, 14});
  CHECK(parts_for("gpt2-124m", 4, "uniform") == Parts{0, 4, 8, 11, 14});
  // The 39M-parameter embedding weighs as much as five or six blocks.
  CHECK(parts_for("gpt2-124m", 2, "parameters") == Parts{0, 4, 14});
  CHECK(parts_for("gpt2-124m", 3, "parameters") == Parts{0, 1, 7, 14});
  CHECK(parts_for("gpt2-124m", 4, "parameters") == Parts{0, 1, 5, 9, 14});
  CHECK(parts_for("gpt2-124m", 2, "type:block") == Parts{0, 7, 14});
  CHECK(parts_for("gpt2-124m", 3, "type:Transformer") == Parts{0, 5, 9, 14});
  CHECK(parts_for("gpt2-124m", 4, "type:transformerblock") == Parts{0, 4, 7, 10, 14});
  CHECK(parts_for("gpt2-124m", 2, "type:embed|head") == Parts{0, 13, 14});
}

TEST_CASE("pipeline partition: the three methods on gpt-tiny", "[pipeline][partition]") {
  CHECK(parts_for("gpt-tiny", 2, "uniform") == Parts{0, 3, 6});
  CHECK(parts_for("gpt-tiny", 4, "uniform") == Parts{0, 2, 4, 5, 6});
  CHECK(parts_for("gpt-tiny", 2, "parameters") == Parts{0, 3, 6});
  CHECK(parts_for("gpt-tiny", 3, "parameters") == Parts{0, 2, 4, 6});
  CHECK(parts_for("gpt-tiny", 4, "parameters") == Parts{0, 2, 3, 4, 6});
  CHECK(parts_for("gpt-tiny", 3, "type:block") == Parts{0, 3, 4, 6});
  CHECK(parts_for("gpt-tiny", 4, "type:BLOCK") == Parts{0, 2, 3, 4, 6});
}

TEST_CASE("pipeline partition: stage helpers follow the boundaries", "[pipeline][partition]") {
  const StagePartition p{{0, 1, 5, 9, 14}};
  CHECK(p.num_stages() == 4);
  CHECK(p.first_layer(1) == 1);
  CHECK(p.last_layer(1) == 4);
  CHECK(p.num_layers(3) == 5);
  CHECK(p.stage_of_layer(0) == 0);
  CHECK(p.stage_of_layer(4) == 1);
  CHECK(p.stage_of_layer(5) == 2);
  CHECK(p.stage_of_layer(13) == 3);
  CHECK_THROWS_AS(p.stage_of_layer(14), ds::Error);
  CHECK_THROWS_AS(p.first_layer(4), ds::Error);
}

TEST_CASE("partition errors name pipeline.partition and say what to do", "[pipeline][partition]") {
  ds::UsageError e = usage_error_of("gpt-tiny", 2, "type:attention");
  CHECK_THAT(e.what(), Catch::Contains("pipeline.partition"));
  CHECK_THAT(e.what(), Catch::Contains("matches no layer"));
  CHECK_THAT(e.hint(), Catch::Contains("TransformerBlock"));
  CHECK(e.code() == ds::ExitCode::kUsage);

  e = usage_error_of("gpt-tiny", 2, "type:embed");
  CHECK_THAT(e.what(), Catch::Contains("pipeline.partition"));
  CHECK_THAT(e.what(), Catch::Contains("matches only 1 layer but there are 2"));
  CHECK_THAT(e.hint(), Catch::Contains("type:transformer"));

  e = usage_error_of("gpt-tiny", 2, "type:(block");
  CHECK_THAT(e.what(), Catch::Contains("not a valid regular expression"));

  // More stages than layers (the config's own check stops this at n_layer blocks).
  ds::config::TrainConfig cfg = config_for("gpt-tiny", 1, "uniform");
  cfg.ds.pipeline.stages = 7;
  const auto layout = ds::model::build_layout(cfg.model);
  CHECK_THROWS_WITH(partition_layers(layout, cfg.ds.pipeline),
                    Catch::Contains("7 pipeline stages") && Catch::Contains("pipeline.partition"));
}

TEST_CASE("pipeline partition: a world the stages do not divide is refused by the config",
          "[pipeline][partition]") {
  const std::string yaml =
      "model: gpt-tiny\ndata: {train: x.txt}\n"
      "deepspeed: {train_micro_batch_size_per_gpu: 1, pipeline: {stages: 2}}\n";
  const auto f = ds::config::testing::train_failure(yaml, 3);
  CHECK_THAT(f.message, Catch::Contains("not divisible by 2 pipeline stages"));
}
