// The top level of a ds_config: batch triad, precision, the small scalar keys,
// and the sections that need no file of their own.
#include "config/ds_config.h"

#include "config/batch_triad.h"
#include "util/log.h"
#include "util/strings.h"

namespace ds::config {
namespace {

Fp16Config read_fp16(MapReader& m) {
  Fp16Config f;
  f.enabled = m.get_bool("enabled", false);
  f.auto_cast = m.get_bool("auto_cast", false);
  f.loss_scale = m.get_double("loss_scale", 0, Range::at_least(0));
  f.initial_scale_power = m.get_int("initial_scale_power", 16, Range::between(0, 63));
  f.loss_scale_window = m.get_int("loss_scale_window", 1000, Range::at_least(1));
  f.hysteresis = m.get_int("hysteresis", 2, Range::at_least(1));
  f.consecutive_hysteresis = m.get_bool("consecutive_hysteresis", false);
  f.min_loss_scale = m.get_double("min_loss_scale", 1, Range::positive());
  if (m.get_bool("fp16_master_weights_and_grads", false)) {
    m.refuse_unsupported("fp16_master_weights_and_grads",
                         "dstrain always keeps fp32 master weights");
  }
  m.finish();
  return f;
}

Bf16Config read_bf16(MapReader& m) {
  Bf16Config b;
  b.enabled = m.get_bool("enabled", false);
  b.immediate_grad_update = m.get_bool("immediate_grad_update", false);
  b.check_grad_overflow = m.get_bool("check_grad_overflow", true);
  for (const char* key : {"bf16_master_weights_and_grads", "bf16_optimizer_states"}) {
    if (m.get_bool(key, false)) {
      m.refuse_unsupported(key, "dstrain always keeps fp32 master weights and optimizer state");
    }
  }
  m.finish();
  return b;
}

PipelineConfig read_pipeline(MapReader& m) {
  PipelineConfig p;
  p.stages = m.get_int("stages", 1, Range::at_least(1));
  const std::string partition = m.get_string("partition", "parameters");
  const std::string lower = to_lower(partition);
  if (lower == "parameters") {
    p.partition = PartitionMethod::kParameters;
  } else if (lower == "uniform") {
    p.partition = PartitionMethod::kUniform;
  } else if (lower.rfind("type:", 0) == 0 && partition.size() > 5) {
    p.partition = PartitionMethod::kType;
    p.partition_type_regex = partition.substr(5);
  } else {
    m.fail("partition",
           fmt::format("expected \"parameters\", \"uniform\" or \"type:REGEX\", found \"{}\"",
                       partition),
           lower == "best" ? "DeepSpeed's \"best\" is not implemented; \"parameters\" balances "
                             "parameter counts"
                           : "");
  }
  p.activation_checkpoint_interval =
      m.get_int("activation_checkpoint_interval", 0, Range::at_least(0));
  p.seed_layers = m.get_bool("seed_layers", false);
  p.pipe_partitioned = m.get_bool("pipe_partitioned", true);
  p.grad_partitioned = m.get_bool("grad_partitioned", true);
  (void)m.get_bool("use_reentrant", true);  // PyTorch's checkpoint flavour: no meaning here
  m.finish();
  return p;
}

ActivationCheckpointingConfig read_activation_checkpointing(MapReader& m) {
  ActivationCheckpointingConfig a;
  a.partition_activations = m.get_bool("partition_activations", false);
  a.cpu_checkpointing = m.get_bool("cpu_checkpointing", false);
  a.contiguous_memory_optimization = m.get_bool("contiguous_memory_optimization", false);
  a.number_checkpoints = m.get_optional_int("number_checkpoints", Range::at_least(1));
  a.synchronize_checkpoint_boundary = m.get_bool("synchronize_checkpoint_boundary", false);
  a.profile = m.get_bool("profile", false);
  m.finish();
  return a;
}

CheckpointOptions read_checkpoint(MapReader& m) {
  CheckpointOptions c;
  c.tag_validation = m.get_choice("tag_validation", "WARN", {"WARN", "IGNORE", "FAIL"});
  c.load_universal = m.get_bool("load_universal", false);
  c.use_node_local_storage = m.get_bool("use_node_local_storage", false);
  if (auto w = m.get_map("parallel_write")) {
    (void)w->get_bool("pipeline_stage", false);  // every rank writes its own files anyway
    w->finish();
  }
  m.refuse_unsupported("writer", "DeepSpeed's FastPersist checkpoint writers");
  (void)m.get_bool("checkpoint_serialization", true);
  m.finish();
  return c;
}

MonitorConfig read_monitor(MapReader& m) {
  MonitorConfig c;
  c.enabled = m.get_bool("enabled", false);
  c.output_path = m.get_string("output_path", "");
  c.job_name = m.get_string("job_name", "DeepSpeedJobName");
  m.finish();
  return c;
}

WandbConfig read_wandb(MapReader& m) {
  WandbConfig w;
  w.enabled = m.get_bool("enabled", false);
  w.group = m.get_string("group", "");
  w.team = m.get_string("team", "");
  w.project = m.get_string("project", "deepspeed");
  m.finish();
  return w;
}

// DeepSpeed top-level features that dstrain does not implement. A section whose
// "enabled" is false asks for nothing and is accepted; anything else is refused.
void refuse_unsupported_features(MapReader& root) {
  static const std::pair<const char*, const char*> kSections[] = {
      {"amp", "NVIDIA Apex AMP (use bf16 or fp16)"},
      {"torch_autocast", "torch.autocast (use bf16 or fp16)"},
      {"flops_profiler", "the FLOPs profiler (dsworker reports MFU itself)"},
      {"comms_logger", "the communication logger"},
      {"autotuning", "autotuning"},
      {"elasticity", "elastic training"},
      {"progressive_layer_drop", "progressive layer drop"},
      {"curriculum_learning", "curriculum learning"},
      {"data_efficiency", "data efficiency"},
      {"eigenvalue", "eigenvalue computation"},
      {"quantize_training", "quantized training"},
      {"hybrid_engine", "the RLHF hybrid engine"},
      {"compile", "torch.compile"},
      {"nebula", "Nebula checkpointing"},
      {"datastates_ckpt", "DataStates checkpointing"},
      {"comet", "the Comet monitor"},
      {"tensor_parallel", "tensor parallelism"},
  };
  for (const auto& [key, what] : kSections) root.refuse_unless_disabled(key, what);
  static const std::pair<const char*, const char*> kKeys[] = {
      {"sparse_attention", "sparse attention"},
      {"compression_training", "compression training"},
      {"aio", "async I/O tuning (dstrain's nvme offload uses plain file I/O)"},
      {"weight_quantization", "weight quantization"},
      {"expert_parallel", "mixture-of-experts parallelism"},
      {"timers", "DeepSpeed's throughput timers (dsworker reports throughput itself)"},
      {"vocabulary_size", "the vocabulary size belongs in model.vocab_size"},
      {"log_level", "use log.level in train.cfg"},
  };
  for (const auto& [key, what] : kKeys) root.refuse_unsupported(key, what);
  for (const char* key : {"sparse_gradients", "disable_allgather", "graph_harvesting", "dump_state",
                          "dataloader_drop_last", "use_data_before_expert_parallelism"}) {
    if (root.get_bool(key, false)) root.refuse_unsupported(key, "not implemented in dstrain");
  }
  // data_types.grad_accum_dtype: dstrain accumulates gradients in fp32, which is the
  // only value it can honour.
  if (auto types = root.get_map("data_types")) {
    const std::string accum =
        types->get_choice("grad_accum_dtype", "fp32", {"fp32", "fp16", "bf16"});
    if (accum != "fp32") {
      types->fail("grad_accum_dtype",
                  fmt::format("dstrain accumulates gradients in fp32, not {}", accum),
                  "remove data_types or set grad_accum_dtype to \"fp32\"");
    }
    types->finish();
  }
  if (root.get_int("sequence_parallel_size", 1) != 1) {
    root.refuse_unsupported("sequence_parallel_size", "sequence parallelism");
  }
  if (!root.get_bool("managed_gradient_accumulation", true)) {
    root.refuse_unsupported("managed_gradient_accumulation",
                            "dsworker always accumulates gradients itself");
  }
}

}  // namespace

BatchConfig parse_batch(MapReader& root, int64_t pipeline_stages, const RunContext& context) {
  TriadInput in;
  in.train_batch_size = root.get_optional_int("train_batch_size", Range::at_least(1));
  in.micro_batch_per_gpu =
      root.get_optional_int("train_micro_batch_size_per_gpu", Range::at_least(1));
  in.gradient_accumulation_steps =
      root.get_optional_int("gradient_accumulation_steps", Range::at_least(1));
  in.dp_size = context.world_size / pipeline_stages;
  const TriadResult r = resolve_batch_triad(in);
  if (!r.error.empty()) {
    // Point at the key the message is about, or at whichever batch key was written,
    // or at the ds_config itself when none was.
    std::string key = r.offending_key;
    for (const char* k :
         {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"}) {
      if (!root.has(key) && root.has(k)) key = k;
    }
    const bool any_auto = root.is_auto("train_batch_size") ||
                          root.is_auto("train_micro_batch_size_per_gpu") ||
                          root.is_auto("gradient_accumulation_steps");
    const auto fail = [&](const std::string& what, std::string hint) {
      if (any_auto) {
        hint =
            "\"auto\" batch sizes are what the run can infer from the others: give "
            "train_micro_batch_size_per_gpu (Hugging Face's Trainer fills them in from its "
            "own arguments; dsworker has no other source)";
      }
      if (root.has(key)) root.fail(key, what, hint);
      root.fail_here(what, hint);
    };
    fail(fmt::format("{} (data-parallel size {} = world size {} / {} pipeline stage{})", r.error,
                     in.dp_size, context.world_size, pipeline_stages,
                     pipeline_stages == 1 ? "" : "s"),
         "set the three so that train_batch_size = train_micro_batch_size_per_gpu * "
         "gradient_accumulation_steps * data-parallel size, or give two and let the third "
         "be inferred");
  }
  BatchConfig b;
  b.train_batch_size = r.train_batch_size;
  b.micro_batch_per_gpu = r.micro_batch_per_gpu;
  b.gradient_accumulation_steps = r.gradient_accumulation_steps;
  b.world_size = context.world_size;
  b.dp_size = in.dp_size;
  return b;
}

DsConfig load_ds_config(const std::filesystem::path& path, const RunContext& context) {
  const DocumentPtr doc = load_document(path, "ds_config");
  MapReader root(doc, doc->root, "");
  return parse_ds_config(root, context);
}

DsConfig parse_ds_config(MapReader& root, const RunContext& context) {
  DsConfig c;
  MapReader fp16 = root.get_map_or_empty("fp16");
  c.fp16 = read_fp16(fp16);
  const std::string bf16_key = root.pick({"bf16", "bfloat16"});
  MapReader bf16 = root.get_map_or_empty(bf16_key);
  c.bf16 = read_bf16(bf16);
  if (c.fp16.enabled && c.bf16.enabled) {
    root.fail(bf16_key, "bfloat16 and fp16 modes cannot be simultaneously enabled",
              "turn one of fp16.enabled and " + bf16_key + ".enabled off");
  }

  if (auto m = root.get_map("optimizer")) {
    c.optimizer = parse_optimizer(*m);
  }
  if (auto m = root.get_map("scheduler")) c.scheduler = parse_scheduler(*m, c.optimizer, context);

  const YAML::Node zero_node = root.raw("zero_optimization");
  if (zero_node.IsScalar() && !zero_node.IsNull()) {
    // The legacy boolean form: true is stage 1, with the top-level allgather_size.
    c.zero.stage = root.get_bool("zero_optimization", false) ? 1 : 0;
    c.zero.allgather_bucket_size =
        root.get_int("allgather_size", c.zero.allgather_bucket_size, Range::at_least(1));
  } else {
    MapReader zero = root.get_map_or_empty("zero_optimization");
    c.zero = parse_zero(zero);
  }

  if (auto m = root.get_map("pipeline")) {
    c.pipeline = read_pipeline(*m);
    if (c.pipeline.stages > 1 && c.zero.stage == 3) {
      m->fail("stages",
              fmt::format("pipeline parallelism ({} stages) cannot be combined with ZeRO stage 3",
                          c.pipeline.stages),
              "use zero_optimization.stage 0, 1 or 2 with a pipeline");
    }
    if (context.world_size % c.pipeline.stages != 0) {
      m->fail("stages",
              fmt::format("the world size {} is not divisible by {} pipeline stages",
                          context.world_size, c.pipeline.stages),
              "launch a multiple of pipeline.stages ranks");
    }
    if (context.model_layers && c.pipeline.stages > *context.model_layers) {
      m->fail("stages", fmt::format("{} pipeline stages for a model of {} transformer blocks; "
                                    "every stage needs at least one block",
                                    c.pipeline.stages, *context.model_layers));
    }
  }
  c.batch = parse_batch(root, c.pipeline.stages, context);
  if (auto m = root.get_map("activation_checkpointing")) {
    c.activation_checkpointing = read_activation_checkpointing(*m);
  }
  if (auto m = root.get_map("checkpoint")) c.checkpoint = read_checkpoint(*m);
  if (auto m = root.get_map("tensorboard")) c.tensorboard = read_monitor(*m);
  if (auto m = root.get_map("csv_monitor")) c.csv_monitor = read_monitor(*m);
  if (auto m = root.get_map("wandb")) c.wandb = read_wandb(*m);

  c.gradient_clipping = root.get_double("gradient_clipping", 1.0, Range::at_least(0));
  c.steps_per_print = root.get_int("steps_per_print", 10, Range::at_least(1));
  c.wall_clock_breakdown = root.get_bool("wall_clock_breakdown", false);
  c.memory_breakdown = root.get_bool("memory_breakdown", false);
  const std::string comm =
      root.get_choice("communication_data_type", "default", {"default", "fp32", "fp16", "bf16"});
  c.communication_data_type = comm == "fp32"   ? CommDataType::kFp32
                              : comm == "fp16" ? CommDataType::kFp16
                              : comm == "bf16" ? CommDataType::kBf16
                                               : CommDataType::kDefault;
  (void)root.get_choice("seq_parallel_communication_data_type", "fp32", {"fp32", "fp16", "bf16"});
  c.prescale_gradients = root.get_bool("prescale_gradients", false);
  c.gradient_predivide_factor =
      root.get_double("gradient_predivide_factor", 1.0, Range::positive());
  c.gradient_allreduce_sum =
      root.get_choice("gradient_allreduce_op", "mean", {"mean", "sum"}) == "sum";
  if (c.gradient_allreduce_sum && c.zero.stage == 3) {
    root.fail("gradient_allreduce_op",
              "gradient_allreduce_op='sum' is not supported with ZeRO "
              "stage 3");
  }
  c.zero_allow_untested_optimizer = root.get_bool("zero_allow_untested_optimizer", false);
  // DeepSpeed's ZeRO optimizers are tested with Adam-family optimizers only.
  if (c.zero.stage > 0 && c.optimizer.type == OptimizerType::kSgd &&
      !c.zero_allow_untested_optimizer) {
    root.fail("optimizer",
              "You are using an untested ZeRO Optimizer. Please add "
              "<\"zero_allow_untested_optimizer\": true> in the configuration file to use it.",
              "SGD under ZeRO is not tested by DeepSpeed; dstrain follows its rule");
  }
  if (c.pipeline.stages > 1 && c.zero.overlap()) {
    // As DeepSpeed's pipeline engine does: its communication is scheduled, not overlapped.
    log::warn("{}: pipeline parallelism turns zero_optimization.overlap_comm off",
              root.document().name);
    c.zero.overlap_comm = false;
  }
  (void)root.get_bool("zero_force_ds_cpu_optimizer", true);  // dstrain has one CPU optimizer
  refuse_unsupported_features(root);
  root.finish();
  return c;
}

}  // namespace ds::config
