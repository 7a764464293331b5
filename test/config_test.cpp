// ds_config and train.cfg: defaults, DeepSpeed's resolution rules, accepted shapes.
#include <catch2/catch.hpp>
#include <cmath>

#include "config/config_json.h"
#include "config_helpers.h"

using namespace ds::config;
using namespace ds::config::testing;

TEST_CASE("an empty-but-for-batch ds_config gets DeepSpeed's defaults", "[config]") {
  const DsConfig c = ds_from(R"({"train_micro_batch_size_per_gpu": 2})");
  CHECK(c.batch.train_batch_size == 2);
  CHECK(c.batch.gradient_accumulation_steps == 1);
  CHECK_FALSE(c.fp16.enabled);
  CHECK(c.fp16.initial_scale_power == 16);
  CHECK(c.fp16.loss_scale_window == 1000);
  CHECK(c.fp16.hysteresis == 2);
  CHECK(c.fp16.min_loss_scale == 1);
  CHECK_FALSE(c.bf16.enabled);
  CHECK(c.optimizer.type == OptimizerType::kAdamW);
  CHECK(c.optimizer.lr == 1e-3);
  CHECK(c.scheduler.index() == 0);
  CHECK(c.zero.stage == 0);
  CHECK(c.zero.contiguous_gradients);
  CHECK(c.zero.reduce_scatter);
  CHECK(c.zero.reduce_bucket_size == 500'000'000);
  CHECK(c.zero.allgather_bucket_size == 500'000'000);
  CHECK_FALSE(c.zero.overlap());
  CHECK(c.zero.sub_group_size == 1'000'000'000);
  CHECK(c.zero.prefetch_bucket_size == 50'000'000);
  CHECK(c.zero.param_persistence_threshold == 100'000);
  CHECK(c.gradient_clipping == 1.0);
  CHECK(c.steps_per_print == 10);
  CHECK(c.gradient_predivide_factor == 1.0);
  CHECK_FALSE(c.prescale_gradients);
  CHECK(c.pipeline.stages == 1);
  CHECK(c.pipeline.partition == PartitionMethod::kParameters);
  CHECK(c.checkpoint.tag_validation == "WARN");
  CHECK(c.wandb.project == "deepspeed");
}

TEST_CASE("the batch triad is inferred from the data-parallel size", "[config][triad]") {
  SECTION("micro and accumulation give the global batch") {
    const DsConfig c =
        ds_from(R"({"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2})", 8);
    CHECK(c.batch.train_batch_size == 64);
  }
  SECTION("global and micro give the accumulation") {
    const DsConfig c =
        ds_from(R"({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 4})", 8);
    CHECK(c.batch.gradient_accumulation_steps == 2);
  }
  SECTION("\"auto\" counts as not given") {
    const DsConfig c = ds_from(
        R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto"})",
        4);
    CHECK(c.batch.micro_batch_per_gpu == 8);
    CHECK(c.batch.gradient_accumulation_steps == 1);
  }
  SECTION("pipeline stages divide the world before the triad") {
    const DsConfig c = ds_from(
        R"({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 4,
            "pipeline": {"stages": 2}})",
        4);
    CHECK(c.batch.dp_size == 2);
    CHECK(c.batch.train_batch_size == 16);
  }
}

TEST_CASE("Adam decouples weight decay unless adam_w_mode is false", "[config][optimizer]") {
  CHECK(ds_from(R"({"train_batch_size": 1, "optimizer": {"type": "Adam"}})")
            .optimizer.decoupled_weight_decay());
  CHECK_FALSE(ds_from(R"({"train_batch_size": 1,
                          "optimizer": {"type": "adam", "params": {"adam_w_mode": false}}})")
                  .optimizer.decoupled_weight_decay());
  const DsConfig sgd = ds_from(R"({"train_batch_size": 1, "optimizer": {"type": "SGD",
      "params": {"lr": 0.1, "momentum": 0.9, "nesterov": true}}})");
  CHECK(sgd.optimizer.type == OptimizerType::kSgd);
  CHECK(sgd.optimizer.momentum == 0.9);
}

TEST_CASE("schedulers read every parameter with DeepSpeed's defaults", "[config][scheduler]") {
  SECTION("WarmupLR: warmup_max_lr defaults to the optimizer lr") {
    const DsConfig c = ds_from(R"({"train_batch_size": 1,
        "optimizer": {"type": "AdamW", "params": {"lr": 0.0003}},
        "scheduler": {"type": "WarmupLR"}})");
    const auto& w = std::get<WarmupLRParams>(c.scheduler);
    CHECK(w.warmup_max_lr == 0.0003);
    CHECK(w.warmup_num_steps == 1000);
    CHECK(w.warmup_type == WarmupType::kLog);
  }
  SECTION("WarmupDecayLR: total_num_steps \"auto\" is train.steps") {
    const DsConfig c = ds_from(R"({"train_batch_size": 1, "scheduler": {"type": "WarmupDecayLR",
        "params": {"total_num_steps": "auto", "warmup_max_lr": "auto"}}})",
                               1, 100);
    const auto& d = std::get<WarmupDecayLRParams>(c.scheduler);
    CHECK(d.total_num_steps == 100);
    CHECK(d.warmup_max_lr == 0.001);
  }
  SECTION("WarmupCosineLR") {
    const DsConfig c = ds_from(R"({"train_batch_size": 1, "scheduler": {"type": "WarmupCosineLR",
        "params": {"total_num_steps": 500, "warmup_type": "linear"}}})");
    const auto& w = std::get<WarmupCosineLRParams>(c.scheduler);
    CHECK(w.total_num_steps == 500);
    CHECK(w.cos_min_ratio == 0.0001);
    CHECK(w.warmup_min_ratio == 0);
    CHECK(w.warmup_type == WarmupType::kLinear);
  }
  SECTION("OneCycle: second step size and stair count default to the first") {
    const DsConfig c = ds_from(R"({"train_batch_size": 1, "scheduler": {"type": "OneCycle",
        "params": {"cycle_min_lr": 0.0001, "cycle_max_lr": 0.01, "cycle_first_step_size": 300,
                   "cycle_first_stair_count": 3}}})");
    const auto& o = std::get<OneCycleParams>(c.scheduler);
    CHECK(o.cycle_second_step_size == 300);
    CHECK(o.cycle_second_stair_count == 3);
    CHECK(o.cycle_momentum);
    CHECK(o.cycle_min_mom == 0.8);
    CHECK(o.cycle_max_mom == 0.9);
  }
  SECTION("LRRangeTest") {
    const DsConfig c = ds_from(R"({"train_batch_size": 1, "scheduler": {"type": "LRRangeTest"}})");
    const auto& r = std::get<LRRangeTestParams>(c.scheduler);
    CHECK(r.lr_range_test_min_lr == 1e-3);
    CHECK(r.lr_range_test_step_size == 2000);
    CHECK(r.lr_range_test_step_rate == 1.0);
    CHECK_FALSE(r.lr_range_test_staircase);
  }
}

TEST_CASE("ZeRO keys, stage3_ aliases and deprecated spellings", "[config][zero]") {
  SECTION("stage 3 overlaps communication by default") {
    CHECK(ds_from(R"({"train_batch_size": 1, "zero_optimization": {"stage": 3}})").zero.overlap());
  }
  SECTION("sizes written as 5e8 are integers") {
    const DsConfig c = ds_from(R"({"train_batch_size": 1, "zero_optimization": {"stage": 2,
        "reduce_bucket_size": 5e7, "allgather_bucket_size": 2e8}})");
    CHECK(c.zero.reduce_bucket_size == 50'000'000);
    CHECK(c.zero.allgather_bucket_size == 200'000'000);
  }
  SECTION("stage3_ aliases") {
    const DsConfig c = ds_from(R"({"train_batch_size": 1, "zero_optimization": {"stage": 3,
        "stage3_prefetch_bucket_size": 1e6, "stage3_max_live_parameters": 3e8,
        "stage3_gather_fp16_weights_on_model_save": true}})");
    CHECK(c.zero.prefetch_bucket_size == 1'000'000);
    CHECK(c.zero.max_live_parameters == 300'000'000);
    CHECK(c.zero.gather_16bit_weights_on_model_save);
  }
  SECTION("cpu_offload maps to offload_optimizer.device cpu") {
    const DsConfig c = ds_from(
        R"({"train_batch_size": 1, "zero_optimization": {"stage": 2, "cpu_offload": true}})");
    CHECK(c.zero.offload_optimizer.device == OffloadDevice::kCpu);
    CHECK(c.zero.offload_optimizer.pin_memory);
  }
  SECTION("the legacy boolean form is stage 1") {
    CHECK(ds_from(R"({"train_batch_size": 1, "zero_optimization": true})").zero.stage == 1);
  }
  SECTION("nvme offload at stage 3") {
    const DsConfig c = ds_from(R"({"train_batch_size": 1, "zero_optimization": {"stage": 3,
        "offload_optimizer": {"device": "nvme", "nvme_path": "/local_nvme"},
        "offload_param": {"device": "nvme", "nvme_path": "/local_nvme", "buffer_count": 6}}})");
    CHECK(c.zero.offload_optimizer.device == OffloadDevice::kNvme);
    CHECK(c.zero.offload_param.buffer_count == 6);
  }
}

TEST_CASE("bfloat16 is another spelling of bf16", "[config]") {
  CHECK(ds_from(R"({"train_batch_size": 1, "bfloat16": {"enabled": true}})").bf16.enabled);
}

TEST_CASE("sections that ask for nothing are accepted", "[config]") {
  const DsConfig c = ds_from(R"({"train_batch_size": 1,
      "flops_profiler": {"enabled": false, "profile_step": 1},
      "tensorboard": {"enabled": true, "output_path": "tb/", "job_name": "x"},
      "csv_monitor": {"enabled": false}, "wandb": {"enabled": false},
      "activation_checkpointing": {"partition_activations": false, "number_checkpoints": 4},
      "checkpoint": {"tag_validation": "fail"}})");
  CHECK(c.tensorboard.enabled);
  CHECK(c.tensorboard.output_path == "tb/");
  CHECK(c.activation_checkpointing.number_checkpoints == 4);
  CHECK(c.checkpoint.tag_validation == "FAIL");
}

// The shape of Hugging Face's ds_config_zero3.json (examples/deepspeed), "auto" everywhere.
TEST_CASE("a Hugging Face style ZeRO-3 config resolves its autos", "[config]") {
  const DsConfig c = ds_from(R"({
    "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000,
             "initial_scale_power": 16, "hysteresis": 2, "min_loss_scale": 1},
    "bf16": {"enabled": "auto"},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                  "weight_decay": "auto"}},
    "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": "auto",
                  "warmup_max_lr": "auto", "warmup_num_steps": "auto"}},
    "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": true},
      "offload_param": {"device": "cpu", "pin_memory": true}, "overlap_comm": true,
      "contiguous_gradients": true, "sub_group_size": 1e9, "reduce_bucket_size": "auto",
      "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
      "stage3_max_live_parameters": 1e9, "stage3_max_reuse_distance": 1e9,
      "stage3_gather_16bit_weights_on_model_save": true},
    "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "steps_per_print": 2000,
    "train_batch_size": "auto", "train_micro_batch_size_per_gpu": 4,
    "wall_clock_breakdown": false})",
                             2);
  CHECK(c.batch.train_batch_size == 8);
  CHECK(c.optimizer.lr == 1e-3);
  CHECK(std::get<WarmupLRParams>(c.scheduler).warmup_max_lr == 1e-3);
  CHECK(c.zero.stage == 3);
  CHECK(c.zero.offload_param.device == OffloadDevice::kCpu);
  CHECK(c.steps_per_print == 2000);
}

TEST_CASE("train.cfg: presets, overrides, inline deepspeed and relative paths", "[config][train]") {
  const TrainConfig t = train_from(R"(
model:
  preset: gpt2-124m
  vocab_size: 256
data:
  train: corpus.txt
  seq_len: 64
deepspeed:
  train_micro_batch_size_per_gpu: 4
  zero_optimization: {stage: 1}
train:
  steps: 10
)",
                                   2);
  CHECK(t.model.n_layer == 12);
  CHECK(t.model.vocab_size == 256);
  CHECK(t.data.seq_len == 64);
  CHECK(t.ds.batch.train_batch_size == 8);
  CHECK(t.ds.zero.stage == 1);
  CHECK(t.deepspeed_source == "inline");
  CHECK(t.train.seed == 1234);
  CHECK(t.data.shuffle);
}

TEST_CASE("seq_len defaults to the block size and presets are named", "[config][train]") {
  const TrainConfig t = train_from(
      "model: gpt-tiny\ndata: {train: x.txt}\n"
      "deepspeed: {train_batch_size: 4}\n");
  CHECK(t.data.seq_len == 128);
  CHECK(t.model.parameter_count() > 800'000);
  CHECK(t.model.parameter_count() < 1'200'000);
}

TEST_CASE("arch llama takes Llama's defaults and fields", "[config][model]") {
  const TrainConfig t = train_from(
      "model: {preset: llama-tiny, rope_theta: 500000.0,\n"
      "  rope_scaling: {rope_type: llama3, factor: 32, original_max_position_embeddings: 8192}}\n"
      "data: {train: x.txt}\ndeepspeed: {train_batch_size: 4}\n");
  CHECK(t.model.llama());
  CHECK(t.model.kv_heads() == 2);
  CHECK(t.model.mlp_width() == 352);
  CHECK_FALSE(t.model.tie_embeddings);  // Hugging Face's LlamaConfig default
  CHECK(t.model.layer_norm_epsilon == 1e-6);
  REQUIRE(t.model.rope_scaling.has_value());
  CHECK(t.model.rope_scaling->factor == 32);
  CHECK(t.model.rope_scaling->high_freq_factor == 4);  // default
  // The layout's parameters are the count the config predicts.
  const TrainConfig plain = train_from(
      "model: {arch: llama, n_embd: 96, n_head: 6}\ndata: {train: x.txt}\n"
      "deepspeed: {train_batch_size: 4}\n");
  CHECK(plain.model.kv_heads() == 6);
  CHECK(plain.model.mlp_width() == 256);  // 8/3 of 96, up to a multiple of 256
}

TEST_CASE("the resolved JSON names every key with DeepSpeed's spelling", "[config][json]") {
  const TrainConfig t =
      train_from("model: gpt-tiny\ndata: {train: x.txt}\ndeepspeed: {train_batch_size: 4}\n", 1);
  const auto j = to_json(t);
  CHECK(j["deepspeed"]["train_batch_size"] == 4);
  CHECK(j["deepspeed"]["gradient_accumulation_steps"] == 1);
  CHECK(j["deepspeed"]["zero_optimization"]["stage3_prefetch_bucket_size"] == 50'000'000);
  CHECK(j["deepspeed"]["optimizer"]["type"] == "AdamW");
  CHECK(j["model"]["parameters"] == t.model.parameter_count());
}

TEST_CASE("GPT-2 124M has GPT-2's parameter count", "[config][model]") {
  const TrainConfig t =
      train_from("model: gpt2-124m\ndata: {train: x.bin}\ndeepspeed: {train_batch_size: 1}\n");
  CHECK(t.model.parameter_count() == 124'439'808);
}

TEST_CASE("every example in configs/ validates", "[config][examples]") {
  for (const char* name : {"tiny.yaml", "gpt2-124m-zero2-bf16.yaml", "zero3-offload.yaml",
                           "pipeline-2stage.yaml", "llama-tiny.yaml"}) {
    INFO(name);
    for (int64_t world : {2, 4, 8}) {
      CHECK_NOTHROW(load_train_config(std::string(DS_SOURCE_DIR) + "/configs/" + name, world));
    }
  }
}

TEST_CASE("DeepSpeed keys with no meaning here still load", "[config]") {
  const DsConfig c = ds_from(R"({"train_batch_size": 2, "zero_optimization": true,
      "allgather_size": 1e8, "dump_state": false, "data_types": {"grad_accum_dtype": "fp32"},
      "optimizer": {"type": "AdamW", "legacy_fusion": false,
                    "params": {"torch_adam": true}},
      "pipeline": {"stages": 2, "use_reentrant": true}})",
                             2);
  CHECK(c.zero.stage == 1);
  CHECK(c.zero.allgather_bucket_size == 100'000'000);
  CHECK(c.optimizer.weight_decay == 0.01);  // torch.optim.AdamW's default
  CHECK(c.pipeline.stages == 2);
}

TEST_CASE("SGD under ZeRO with zero_allow_untested_optimizer", "[config]") {
  CHECK(ds_from(R"({"train_batch_size": 1, "zero_allow_untested_optimizer": true,
      "zero_optimization": {"stage": 2}, "optimizer": {"type": "SGD"}})")
            .zero.stage == 2);
}
