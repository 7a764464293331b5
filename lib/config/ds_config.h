// The DeepSpeed ds_config as typed structs, with DeepSpeed's key names and
// defaults. Parsing needs the run's context (world size, pipeline, train.steps)
// because "auto" values and the batch triad are resolved while the reader still
// knows where each key was written, so that errors can point at it.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <variant>

#include "config/reader.h"

namespace ds::config {

// What a ds_config is resolved against.
struct RunContext {
  int64_t world_size = 1;
  std::optional<int64_t> total_steps;   // train.steps, for total_num_steps: "auto"
  std::optional<int64_t> model_layers;  // transformer blocks, to bound pipeline.stages
};

// The resolved batch triad: train_batch_size = micro * accumulation * dp_size.
struct BatchConfig {
  int64_t train_batch_size = 0;
  int64_t micro_batch_per_gpu = 0;  // train_micro_batch_size_per_gpu
  int64_t gradient_accumulation_steps = 0;
  int64_t world_size = 1;
  int64_t dp_size = 1;  // world_size / pipeline stages
};

struct Fp16Config {
  bool enabled = false;
  bool auto_cast = false;
  double loss_scale = 0;  // 0: dynamic loss scaling
  int64_t initial_scale_power = 16;
  int64_t loss_scale_window = 1000;
  int64_t hysteresis = 2;
  bool consecutive_hysteresis = false;
  double min_loss_scale = 1;
};

struct Bf16Config {
  bool enabled = false;
  bool immediate_grad_update = false;
  bool check_grad_overflow = true;  // skip a step whose gradients hold inf/nan
};

enum class OptimizerType { kAdam, kAdamW, kSgd };

struct OptimizerConfig {
  OptimizerType type = OptimizerType::kAdamW;
  std::string type_name = "AdamW";  // as DeepSpeed spells it
  double lr = 1e-3;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0;
  bool adam_w_mode = true;  // Adam: decoupled weight decay (DeepSpeed's default)
  bool torch_adam = false;
  double momentum = 0;  // SGD
  double dampening = 0;
  bool nesterov = false;
  bool given = false;  // false: the default optimizer was used

  // AdamW, or Adam with adam_w_mode: weight decay decoupled from the gradient.
  bool decoupled_weight_decay() const {
    return type == OptimizerType::kAdamW || (type == OptimizerType::kAdam && adam_w_mode);
  }
};

enum class WarmupType { kLog, kLinear };

struct WarmupLRParams {
  double warmup_min_lr = 0;
  // Absent or "auto": the optimizer's lr for WarmupLR (DeepSpeed >= 0.17.2), 0.001 for
  // WarmupDecayLR (its own default).
  double warmup_max_lr = 0.001;
  int64_t warmup_num_steps = 1000;
  WarmupType warmup_type = WarmupType::kLog;
};

struct WarmupDecayLRParams : WarmupLRParams {
  int64_t total_num_steps = 0;  // required; "auto": train.steps
};

struct WarmupCosineLRParams {
  int64_t total_num_steps = 0;  // required; "auto": train.steps
  double warmup_min_ratio = 0;
  int64_t warmup_num_steps = 1000;
  double cos_min_ratio = 0.0001;
  WarmupType warmup_type = WarmupType::kLog;
};

struct OneCycleParams {
  double cycle_min_lr = 0;
  double cycle_max_lr = 0;
  double decay_lr_rate = 0;
  int64_t cycle_first_step_size = 2000;
  int64_t cycle_second_step_size = 2000;  // default: cycle_first_step_size
  int64_t cycle_first_stair_count = 0;
  int64_t cycle_second_stair_count = 0;  // default: cycle_first_stair_count
  int64_t decay_step_size = 0;
  bool cycle_momentum = true;
  double cycle_min_mom = 0.8;
  double cycle_max_mom = 0.9;
  double decay_mom_rate = 0;
};

struct LRRangeTestParams {
  double lr_range_test_min_lr = 1e-3;
  int64_t lr_range_test_step_size = 2000;
  double lr_range_test_step_rate = 1.0;
  bool lr_range_test_staircase = false;
};

using SchedulerConfig = std::variant<std::monostate, WarmupLRParams, WarmupDecayLRParams,
                                     WarmupCosineLRParams, OneCycleParams, LRRangeTestParams>;
// DeepSpeed's name of the schedule ("" for none).
std::string scheduler_name(const SchedulerConfig& scheduler);

enum class OffloadDevice { kNone, kCpu, kNvme };

struct OffloadOptimizerConfig {
  OffloadDevice device = OffloadDevice::kNone;
  std::string nvme_path;
  int64_t buffer_count = 4;
  bool pin_memory = true;
  bool pipeline_read = false;
  bool pipeline_write = false;
  bool fast_init = false;
  double ratio = 1.0;
};

struct OffloadParamConfig {
  OffloadDevice device = OffloadDevice::kNone;
  std::string nvme_path;
  int64_t buffer_count = 5;
  int64_t buffer_size = 100'000'000;
  int64_t max_in_cpu = 1'000'000'000;
  bool pin_memory = true;
};

struct ZeroConfig {
  int64_t stage = 0;
  bool contiguous_gradients = true;
  std::optional<bool> overlap_comm;  // DeepSpeed: true for stage 3, false below
  bool reduce_scatter = true;
  int64_t reduce_bucket_size = 500'000'000;
  bool allgather_partitions = true;
  int64_t allgather_bucket_size = 500'000'000;
  bool load_from_fp32_weights = true;
  bool round_robin_gradients = false;
  OffloadOptimizerConfig offload_optimizer;
  OffloadParamConfig offload_param;
  int64_t sub_group_size = 1'000'000'000;
  int64_t prefetch_bucket_size = 50'000'000;        // stage3_prefetch_bucket_size
  int64_t param_persistence_threshold = 100'000;    // stage3_param_persistence_threshold
  int64_t model_persistence_threshold = INT64_MAX;  // stage3_model_persistence_threshold
  int64_t max_live_parameters = 1'000'000'000;      // stage3_max_live_parameters
  int64_t max_reuse_distance = 1'000'000'000;       // stage3_max_reuse_distance
  bool gather_16bit_weights_on_model_save = false;  // stage3_gather_16bit_weights_on_model_save
  bool ignore_unused_parameters = true;

  bool overlap() const { return overlap_comm.value_or(stage == 3); }
};

enum class PartitionMethod { kParameters, kUniform, kType };

struct PipelineConfig {
  int64_t stages = 1;  // "auto": 1 (no pipeline)
  PartitionMethod partition = PartitionMethod::kParameters;
  std::string partition_type_regex;  // partition: "type:REGEX"
  int64_t activation_checkpoint_interval = 0;
  bool seed_layers = false;
  bool pipe_partitioned = true;
  bool grad_partitioned = true;
};

struct ActivationCheckpointingConfig {
  bool partition_activations = false;
  bool cpu_checkpointing = false;
  bool contiguous_memory_optimization = false;
  std::optional<int64_t> number_checkpoints;
  bool synchronize_checkpoint_boundary = false;
  bool profile = false;
};

struct CheckpointOptions {              // ds_config "checkpoint"
  std::string tag_validation = "WARN";  // IGNORE | WARN | FAIL
  bool load_universal = false;
  bool use_node_local_storage = false;
};

struct MonitorConfig {  // tensorboard, csv_monitor
  bool enabled = false;
  std::string output_path;
  std::string job_name = "DeepSpeedJobName";
};

struct WandbConfig {
  bool enabled = false;
  std::string group;
  std::string team;
  std::string project = "deepspeed";
};

enum class CommDataType { kDefault, kFp32, kFp16, kBf16 };

struct DsConfig {
  BatchConfig batch;
  Fp16Config fp16;
  Bf16Config bf16;
  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  ZeroConfig zero;
  PipelineConfig pipeline;
  ActivationCheckpointingConfig activation_checkpointing;
  CheckpointOptions checkpoint;
  MonitorConfig tensorboard;
  MonitorConfig csv_monitor{false, "", "DeepSpeedJobName"};
  WandbConfig wandb;
  double gradient_clipping = 1.0;  // 0: off (DeepSpeed's default is 1.0 since 0.19.3)
  int64_t steps_per_print = 10;    // DeepSpeed now defaults to never; a CLI trainer should talk
  bool gradient_allreduce_sum = false;  // gradient_allreduce_op: "sum" instead of "mean"
  bool wall_clock_breakdown = false;
  bool memory_breakdown = false;
  CommDataType communication_data_type = CommDataType::kDefault;
  bool prescale_gradients = false;
  double gradient_predivide_factor = 1.0;
  bool zero_allow_untested_optimizer = false;
};

// Parses and resolves a ds_config map (a whole file or the inline `deepspeed:` map).
DsConfig parse_ds_config(MapReader& root, const RunContext& context);
// Loads a ds_config file (JSON or YAML) on its own.
DsConfig load_ds_config(const std::filesystem::path& path, const RunContext& context);

// Section parsers, one file each, composed by parse_ds_config.
OptimizerConfig parse_optimizer(MapReader& section);
SchedulerConfig parse_scheduler(MapReader& section, const OptimizerConfig& optimizer,
                                const RunContext& context);
ZeroConfig parse_zero(MapReader& section);
BatchConfig parse_batch(MapReader& root, int64_t pipeline_stages, const RunContext& context);

}  // namespace ds::config
