// Bad configs: each must fail with the file, line, key path and what was wrong,
// as a ConfigError (exit code 2).
#include <catch2/catch.hpp>

#include "config_helpers.h"

using namespace ds::config;
using namespace ds::config::testing;
using Catch::Matchers::Contains;

namespace {

// Checks "<file>:<line>:" and the key path, then each extra fragment.
void expect(const Failure& f, const std::string& position, const std::string& key_path,
            std::initializer_list<const char*> fragments = {}) {
  INFO(f.message);
  CHECK(f.exit_code == 2);
  CHECK_THAT(f.message, Contains(position + ":"));
  CHECK_THAT(f.message, Contains(key_path + ":"));
  for (const char* fragment : fragments) CHECK_THAT(f.message + " " + f.hint, Contains(fragment));
}

}  // namespace

TEST_CASE("ds_config type and range errors", "[config][errors]") {
  SECTION("ZeRO stage 4") {
    expect(ds_failure("{\"train_batch_size\": 1,\n \"zero_optimization\": {\"stage\": 4}}"),
           "ds.json:2", "zero_optimization.stage", {"between 0 and 3", "found 4"});
  }
  SECTION("a negative batch") {
    expect(ds_failure("{\n  \"train_batch_size\": -8\n}"), "ds.json:2", "train_batch_size",
           {">= 1", "found -8"});
  }
  SECTION("a learning rate of \"fast\"") {
    expect(ds_failure("{\"train_batch_size\": 1,\n\"optimizer\": {\"type\": \"AdamW\",\n"
                      "  \"params\": {\"lr\": \"fast\"}}}"),
           "ds.json:3", "optimizer.params.lr", {"expected a number", "the string \"fast\""});
  }
  SECTION("a fractional micro batch") {
    expect(ds_failure("{\"train_micro_batch_size_per_gpu\": 2.5}"), "ds.json:1",
           "train_micro_batch_size_per_gpu", {"an integer", "2.5"});
  }
  SECTION("a boolean given as a string") {
    expect(ds_failure("{\"train_batch_size\": 1,\n\"fp16\": {\"enabled\": \"yes\"}}"), "ds.json:2",
           "fp16.enabled", {"true or false", "the string \"yes\""});
  }
  SECTION("a section given as a number") {
    expect(ds_failure("{\"train_batch_size\": 1,\n\"bf16\": 1}"), "ds.json:2", "bf16",
           {"expected a map"});
  }
  SECTION("betas of the wrong length") {
    expect(ds_failure("{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"Adam\",\n"
                      "\"params\": {\"betas\": [0.9]}}}"),
           "ds.json:2", "optimizer.params.betas", {"a list of 2 numbers"});
  }
  SECTION("a beta of 1") {
    expect(ds_failure("{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"Adam\",\n"
                      "\"params\": {\"betas\": [0.9, 1.0]}}}"),
           "ds.json:2", "optimizer.params.betas", {"below 1"});
  }
  SECTION("an offload device that does not exist") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 2,\n"
                      "  \"offload_optimizer\": {\n    \"device\": \"gpu\"}}}"),
           "ds.json:3", "zero_optimization.offload_optimizer.device",
           {"\"none\", \"cpu\" or \"nvme\"", "the string \"gpu\""});
  }
  SECTION("negative gradient clipping") {
    expect(ds_failure("{\"train_batch_size\": 1,\n\"gradient_clipping\": -1}"), "ds.json:2",
           "gradient_clipping", {">= 0"});
  }
  SECTION("a negative fp16 loss scale") {
    expect(ds_failure("{\"train_batch_size\": 1, \"fp16\": {\"enabled\": true,\n"
                      "\"loss_scale\": -2}}"),
           "ds.json:2", "fp16.loss_scale", {">= 0"});
  }
  SECTION("an unknown communication data type") {
    expect(ds_failure("{\"train_batch_size\": 1,\n\"communication_data_type\": \"fp8\"}"),
           "ds.json:2", "communication_data_type", {"\"fp32\"", "\"fp8\""});
  }
}

TEST_CASE("ds_config unknown, duplicate and unsupported keys", "[config][errors]") {
  SECTION("a misspelt top-level key suggests the right one") {
    expect(ds_failure("{\"train_batch_size\": 1,\n\"gradient_cliping\": 1.0}"), "ds.json:2",
           "gradient_cliping", {"unknown key", "did you mean 'gradient_clipping'"});
  }
  SECTION("a misspelt ZeRO key") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\n"
                      "  \"stage\": 2, \"reduce_bucket_sise\": 5e8}}"),
           "ds.json:2", "zero_optimization.reduce_bucket_sise",
           {"did you mean 'reduce_bucket_size'"});
  }
  SECTION("a misspelt optimizer parameter") {
    expect(ds_failure("{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\",\n"
                      "\"params\": {\"weight_decy\": 0.1}}}"),
           "ds.json:2", "optimizer.params.weight_decy", {"did you mean 'weight_decay'"});
  }
  SECTION("Adam parameters on SGD are unknown there") {
    expect(ds_failure("{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"SGD\",\n"
                      "\"params\": {\"betas\": [0.9, 0.99]}}}"),
           "ds.json:2", "optimizer.params.betas", {"unknown key"});
  }
  SECTION("a duplicate key") {
    expect(ds_failure("{\"train_batch_size\": 1,\n\"train_batch_size\": 2}"), "ds.json:2",
           "train_batch_size", {"duplicate key", "line 1"});
  }
  SECTION("an unknown optimizer") {
    expect(ds_failure("{\"train_batch_size\": 1, \"optimizer\": {\n\"type\": \"AdamX\"}}"),
           "ds.json:2", "optimizer.type", {"unknown optimizer \"AdamX\"", "did you mean"});
  }
  SECTION("a DeepSpeed optimizer dstrain does not implement") {
    expect(ds_failure("{\"train_batch_size\": 1, \"optimizer\": {\n\"type\": \"OneBitAdam\"}}"),
           "ds.json:2", "optimizer.type", {"does not support"});
  }
  SECTION("an unknown scheduler") {
    expect(ds_failure("{\"train_batch_size\": 1, \"scheduler\": {\n\"type\": \"Cosine\"}}"),
           "ds.json:2", "scheduler.type", {"\"WarmupCosineLR\""});
  }
  SECTION("an enabled feature dstrain does not implement is refused by name") {
    expect(ds_failure("{\"train_batch_size\": 1,\n\"flops_profiler\": {\"enabled\": true}}"),
           "ds.json:2", "flops_profiler", {"does not support", "FLOPs profiler"});
  }
  SECTION("sparse attention is refused by name") {
    expect(ds_failure("{\"train_batch_size\": 1,\n\"sparse_attention\": {\"mode\": \"fixed\"}}"),
           "ds.json:2", "sparse_attention", {"does not support"});
  }
  SECTION("ZeRO++ quantized weights are refused by name") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 3,\n"
                      "\"zero_quantized_weights\": true}}"),
           "ds.json:2", "zero_optimization.zero_quantized_weights", {"does not support"});
  }
  SECTION("max_grad_norm in optimizer params points at gradient_clipping") {
    expect(ds_failure("{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\",\n"
                      "\"params\": {\"max_grad_norm\": 1.0}}}"),
           "ds.json:2", "optimizer.params.max_grad_norm", {"gradient_clipping"});
  }
  SECTION("an alias given with its newer spelling") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 3,\n"
                      "\"prefetch_bucket_size\": 1, \"stage3_prefetch_bucket_size\": 2}}"),
           "ds.json:2", "zero_optimization.stage3_prefetch_bucket_size", {"same key"});
  }
  SECTION("cpu_offload together with offload_optimizer") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 2,\n"
                      "\"cpu_offload\": true, \"offload_optimizer\": {\"device\": \"cpu\"}}}"),
           "ds.json:2", "zero_optimization.cpu_offload", {"offload_optimizer"});
  }
}

TEST_CASE("ds_config contradictions", "[config][errors]") {
  SECTION("fp16 and bf16 both on") {
    expect(ds_failure("{\"train_batch_size\": 1,\n\"fp16\": {\"enabled\": true},\n"
                      "\"bf16\": {\"enabled\": true}}"),
           "ds.json:3", "bf16", {"cannot be simultaneously enabled"});
  }
  SECTION("offload_param below stage 3") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 2,\n"
                      "\"offload_param\": {\"device\": \"cpu\"}}}"),
           "ds.json:2", "zero_optimization.offload_param", {"needs ZeRO stage 3", "stage is 2"});
  }
  SECTION("optimizer offload at stage 0") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\n"
                      "\"offload_optimizer\": {\"device\": \"cpu\"}}}"),
           "ds.json:2", "zero_optimization.offload_optimizer", {"stage 1, 2 or 3"});
  }
  SECTION("nvme without a path") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 3,\n"
                      "\"offload_param\": {\"device\": \"nvme\"}}}"),
           "ds.json:2", "zero_optimization.offload_param.device", {"nvme_path"});
  }
  SECTION("a pipeline with ZeRO stage 3") {
    expect(ds_failure("{\"train_batch_size\": 2, \"zero_optimization\": {\"stage\": 3},\n"
                      "\"pipeline\": {\"stages\": 2}}",
                      2),
           "ds.json:2", "pipeline.stages", {"ZeRO stage 3"});
  }
  SECTION("a world that pipeline stages do not divide") {
    expect(ds_failure("{\"train_batch_size\": 2,\n\"pipeline\": {\"stages\": 2}}", 3), "ds.json:2",
           "pipeline.stages", {"world size 3 is not divisible"});
  }
  SECTION("a triad that does not multiply out, with DeepSpeed's message") {
    expect(ds_failure("{\"train_batch_size\": 10,\n \"train_micro_batch_size_per_gpu\": 3,\n"
                      " \"gradient_accumulation_steps\": 3}"),
           "ds.json:1", "train_batch_size",
           {"train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step * "
            "world_size 10 != 3 * 3 * 1"});
  }
  SECTION("a global batch the micro batch does not divide is an error, not a floor") {
    expect(ds_failure("{\"train_batch_size\": 10,\n \"train_micro_batch_size_per_gpu\": 3}"),
           "ds.json:1", "train_batch_size", {"not divisible", "10 != 3 * 3 * 1"});
  }
  SECTION("a global batch the world does not divide") {
    expect(ds_failure("{\"train_batch_size\": 6}", 4), "ds.json:1", "train_batch_size",
           {"not divisible by world_size = 4"});
  }
  SECTION("no batch size at all") {
    expect(ds_failure("{\"gradient_accumulation_steps\": 2}"), "ds.json:1",
           "gradient_accumulation_steps",
           {"Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided"});
  }
  SECTION("a decaying schedule without its length") {
    expect(ds_failure("{\"train_batch_size\": 1, \"scheduler\": {\"type\": \"WarmupDecayLR\",\n"
                      "\"params\": {\"warmup_num_steps\": 10}}}"),
           "ds.json:2", "scheduler.params.total_num_steps", {"needs total_num_steps"});
  }
  SECTION("OneCycle without its learning rates") {
    expect(ds_failure("{\"train_batch_size\": 1, \"scheduler\": {\"type\": \"OneCycle\",\n"
                      "\"params\": {\"cycle_max_lr\": 0.1}}}"),
           "ds.json:2", "scheduler.params.cycle_min_lr", {"cycle_min_lr and cycle_max_lr"});
  }
  SECTION("nesterov without momentum") {
    expect(ds_failure("{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"SGD\",\n"
                      "\"params\": {\"nesterov\": true}}}"),
           "ds.json:2", "optimizer.params.nesterov", {"momentum > 0"});
  }
  SECTION("partial offload below stage 3") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 2,\n"
                      "\"offload_optimizer\": {\"device\": \"cpu\", \"ratio\": 0.5}}}"),
           "ds.json:2", "zero_optimization.offload_optimizer", {"ratio < 1"});
  }
}

TEST_CASE("rules DeepSpeed enforces elsewhere", "[config][errors]") {
  SECTION("a scheduler type of \"auto\"") {
    expect(ds_failure("{\"train_batch_size\": 1, \"scheduler\": {\n\"type\": \"auto\"}}"),
           "ds.json:2", "scheduler.type", {"cannot be \"auto\""});
  }
  SECTION("SGD under ZeRO needs zero_allow_untested_optimizer") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 1},\n"
                      "\"optimizer\": {\"type\": \"SGD\"}}"),
           "ds.json:2", "optimizer", {"zero_allow_untested_optimizer"});
  }
  SECTION("gradients accumulated in another dtype") {
    expect(
        ds_failure("{\"train_batch_size\": 1,\n\"data_types\": {\"grad_accum_dtype\": \"bf16\"}}"),
        "ds.json:2", "data_types.grad_accum_dtype", {"fp32"});
  }
  SECTION("all-auto batch sizes explain where \"auto\" comes from") {
    const Failure f = ds_failure(
        "{\"train_batch_size\": \"auto\",\n"
        "\"train_micro_batch_size_per_gpu\": \"auto\"}");
    CHECK_THAT(f.hint, Contains("Hugging Face"));
  }
  SECTION("the deprecated spelling next to the new one, even when false") {
    expect(ds_failure("{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 3,\n"
                      "\"cpu_offload_param\": false, \"offload_param\": {\"device\": \"cpu\"}}}"),
           "ds.json:2", "zero_optimization.cpu_offload_param", {"offload_param"});
  }
}

TEST_CASE("malformed files", "[config][errors]") {
  SECTION("a trailing comma is not JSON") {
    expect(ds_failure("{\"train_batch_size\": 1,\n}"), "ds.json:2", "(json)", {"not valid JSON"});
  }
  SECTION("an unclosed brace") {
    const Failure f = ds_failure("{\"train_batch_size\": 1,\n \"fp16\": {\"enabled\": true}\n");
    CHECK_THAT(f.message, Contains("ds.json:"));
    CHECK_THAT(f.message, Contains("not valid JSON"));
  }
  SECTION("an empty file") {
    const Failure f = ds_failure("  \n");
    CHECK_THAT(f.message, Contains("ds.json: the file is empty"));
  }
  SECTION("a top level that is not a map") {
    const Failure f = ds_failure("[1, 2]");
    CHECK_THAT(f.message, Contains("expected a map"));
  }
}

TEST_CASE("train.cfg errors", "[config][errors][train]") {
  const std::string ok_tail = "data: {train: x.txt}\ndeepspeed: {train_batch_size: 4}\n";
  SECTION("an unknown section") {
    expect(train_failure("model: gpt-tiny\n" + ok_tail + "trian: {steps: 3}\n"), "train.yaml:4",
           "trian", {"did you mean 'train'"});
  }
  SECTION("an unknown preset") {
    expect(train_failure("model: gpt2-124\n" + ok_tail), "train.yaml:1", "model",
           {"unknown model preset", "did you mean \"gpt2-124m\""});
  }
  SECTION("no model") {
    const Failure f = train_failure(ok_tail);
    CHECK_THAT(f.message, Contains("model: missing"));
  }
  SECTION("heads that do not divide the width") {
    expect(train_failure("model:\n  n_embd: 100\n  n_head: 3\n" + ok_tail), "train.yaml:3",
           "model.n_head", {"not divisible by n_head 3"});
  }
  SECTION("Llama keys on a GPT") {
    expect(train_failure("model:\n  preset: gpt-tiny\n  n_kv_head: 2\n" + ok_tail), "train.yaml:3",
           "model.n_kv_head", {"n_kv_head needs arch: llama"});
  }
  SECTION("query heads that key/value heads do not divide") {
    expect(train_failure("model:\n  preset: llama-tiny\n  n_kv_head: 3\n" + ok_tail),
           "train.yaml:3", "model.n_kv_head", {"n_head 4 is not a multiple of n_kv_head 3"});
  }
  SECTION("a rope_scaling whose bands overlap") {
    expect(train_failure("model:\n  arch: llama\n  rope_scaling: {factor: 8, low_freq_factor: "
                         "4, high_freq_factor: 1}\n" +
                         ok_tail),
           "train.yaml:3", "model.rope_scaling.high_freq_factor", {"larger than low_freq_factor"});
  }
  SECTION("seq_len longer than the block") {
    expect(train_failure("model: gpt-tiny\ndata:\n  train: x.txt\n  seq_len: 512\n"
                         "deepspeed: {train_batch_size: 4}\n"),
           "train.yaml:4", "data.seq_len", {"block_size 128"});
  }
  SECTION("a missing train file key") {
    expect(
        train_failure("model: gpt-tiny\ndata:\n  val: v.txt\ndeepspeed: {train_batch_size: 4}\n"),
        "train.yaml:3", "data", {"missing data.train"});
  }
  SECTION("steps of zero") {
    expect(train_failure("model: gpt-tiny\n" + ok_tail + "train:\n  steps: 0\n"), "train.yaml:5",
           "train.steps", {">= 1"});
  }
  SECTION("an unknown device") {
    expect(train_failure("model: gpt-tiny\n" + ok_tail + "train:\n  device: tpu\n"), "train.yaml:5",
           "train.device", {"\"cuda\""});
  }
  SECTION("inline deepspeed errors carry the deepspeed. prefix") {
    expect(train_failure("model: gpt-tiny\ndata: {train: x.txt}\ndeepspeed:\n"
                         "  train_batch_size: 4\n  zero_optimization:\n    stage: 5\n"),
           "train.yaml:6", "deepspeed.zero_optimization.stage", {"found 5"});
  }
  SECTION("save_every without a directory") {
    expect(train_failure("model: gpt-tiny\n" + ok_tail + "checkpoint:\n  save_every: 10\n"),
           "train.yaml:5", "checkpoint.save_every", {"checkpoint.dir"});
  }
  SECTION("a pipeline deeper than the model") {
    expect(train_failure("model: {n_layer: 2}\ndata: {train: x.txt}\n"
                         "deepspeed: {train_batch_size: 4, pipeline: {stages: 4}}\n",
                         4),
           "train.yaml:3", "deepspeed.pipeline.stages", {"2 transformer blocks"});
  }
  SECTION("an unknown log level") {
    expect(train_failure("model: gpt-tiny\n" + ok_tail + "log: {level: loud}\n"), "train.yaml:4",
           "log.level", {"\"debug\""});
  }
}
