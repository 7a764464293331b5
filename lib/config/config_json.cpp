#include "config/config_json.h"

namespace ds::config {
namespace {

using Json = nlohmann::ordered_json;

const char* device_name(OffloadDevice d) {
  switch (d) {
    case OffloadDevice::kCpu:
      return "cpu";
    case OffloadDevice::kNvme:
      return "nvme";
    case OffloadDevice::kNone:
      return "none";
  }
  return "none";
}

const char* warmup_name(WarmupType t) { return t == WarmupType::kLog ? "log" : "linear"; }

Json warmup_json(const WarmupLRParams& w) {
  return {{"warmup_min_lr", w.warmup_min_lr},
          {"warmup_max_lr", w.warmup_max_lr},
          {"warmup_num_steps", w.warmup_num_steps},
          {"warmup_type", warmup_name(w.warmup_type)}};
}

Json scheduler_params(const SchedulerConfig& s) {
  struct Visitor {
    Json operator()(std::monostate) const { return Json::object(); }
    Json operator()(const WarmupLRParams& w) const { return warmup_json(w); }
    Json operator()(const WarmupDecayLRParams& d) const {
      Json j = warmup_json(d);
      j["total_num_steps"] = d.total_num_steps;
      return j;
    }
    Json operator()(const WarmupCosineLRParams& c) const {
      return {{"total_num_steps", c.total_num_steps},
              {"warmup_min_ratio", c.warmup_min_ratio},
              {"warmup_num_steps", c.warmup_num_steps},
              {"cos_min_ratio", c.cos_min_ratio},
              {"warmup_type", warmup_name(c.warmup_type)}};
    }
    Json operator()(const OneCycleParams& c) const {
      return {{"cycle_min_lr", c.cycle_min_lr},
              {"cycle_max_lr", c.cycle_max_lr},
              {"decay_lr_rate", c.decay_lr_rate},
              {"cycle_first_step_size", c.cycle_first_step_size},
              {"cycle_second_step_size", c.cycle_second_step_size},
              {"cycle_first_stair_count", c.cycle_first_stair_count},
              {"cycle_second_stair_count", c.cycle_second_stair_count},
              {"decay_step_size", c.decay_step_size},
              {"cycle_momentum", c.cycle_momentum},
              {"cycle_min_mom", c.cycle_min_mom},
              {"cycle_max_mom", c.cycle_max_mom},
              {"decay_mom_rate", c.decay_mom_rate}};
    }
    Json operator()(const LRRangeTestParams& r) const {
      return {{"lr_range_test_min_lr", r.lr_range_test_min_lr},
              {"lr_range_test_step_size", r.lr_range_test_step_size},
              {"lr_range_test_step_rate", r.lr_range_test_step_rate},
              {"lr_range_test_staircase", r.lr_range_test_staircase}};
    }
  };
  return std::visit(Visitor{}, s);
}

Json optimizer_json(const OptimizerConfig& o) {
  Json params = {{"lr", o.lr}, {"weight_decay", o.weight_decay}};
  if (o.type == OptimizerType::kSgd) {
    params["momentum"] = o.momentum;
    params["dampening"] = o.dampening;
    params["nesterov"] = o.nesterov;
  } else {
    params["betas"] = {o.betas[0], o.betas[1]};
    params["eps"] = o.eps;
    params["adam_w_mode"] = o.adam_w_mode;
    params["torch_adam"] = o.torch_adam;
  }
  return {{"type", o.type_name},
          {"params", params},
          {"decoupled_weight_decay", o.decoupled_weight_decay()}};
}

Json zero_json(const ZeroConfig& z) {
  const auto& oo = z.offload_optimizer;
  const auto& op = z.offload_param;
  return {{"stage", z.stage},
          {"contiguous_gradients", z.contiguous_gradients},
          {"overlap_comm", z.overlap()},
          {"reduce_scatter", z.reduce_scatter},
          {"reduce_bucket_size", z.reduce_bucket_size},
          {"allgather_partitions", z.allgather_partitions},
          {"allgather_bucket_size", z.allgather_bucket_size},
          {"load_from_fp32_weights", z.load_from_fp32_weights},
          {"round_robin_gradients", z.round_robin_gradients},
          {"offload_optimizer",
           {{"device", device_name(oo.device)},
            {"nvme_path", oo.nvme_path},
            {"buffer_count", oo.buffer_count},
            {"pin_memory", oo.pin_memory},
            {"pipeline_read", oo.pipeline_read},
            {"pipeline_write", oo.pipeline_write},
            {"fast_init", oo.fast_init},
            {"ratio", oo.ratio}}},
          {"offload_param",
           {{"device", device_name(op.device)},
            {"nvme_path", op.nvme_path},
            {"buffer_count", op.buffer_count},
            {"buffer_size", op.buffer_size},
            {"max_in_cpu", op.max_in_cpu},
            {"pin_memory", op.pin_memory}}},
          {"sub_group_size", z.sub_group_size},
          {"stage3_prefetch_bucket_size", z.prefetch_bucket_size},
          {"stage3_param_persistence_threshold", z.param_persistence_threshold},
          {"stage3_model_persistence_threshold", z.model_persistence_threshold},
          {"stage3_max_live_parameters", z.max_live_parameters},
          {"stage3_max_reuse_distance", z.max_reuse_distance},
          {"stage3_gather_16bit_weights_on_model_save", z.gather_16bit_weights_on_model_save},
          {"ignore_unused_parameters", z.ignore_unused_parameters}};
}

const char* comm_name(CommDataType t) {
  switch (t) {
    case CommDataType::kFp32:
      return "fp32";
    case CommDataType::kFp16:
      return "fp16";
    case CommDataType::kBf16:
      return "bf16";
    case CommDataType::kDefault:
      break;
  }
  return nullptr;
}

Json monitor_json(const MonitorConfig& m) {
  return {{"enabled", m.enabled}, {"output_path", m.output_path}, {"job_name", m.job_name}};
}

const char* partition_name(const PipelineConfig& p) {
  switch (p.partition) {
    case PartitionMethod::kUniform:
      return "uniform";
    case PartitionMethod::kType:
      return "type";
    case PartitionMethod::kParameters:
      break;
  }
  return "parameters";
}

}  // namespace

Json to_json(const DsConfig& ds) {
  Json j;
  j["train_batch_size"] = ds.batch.train_batch_size;
  j["train_micro_batch_size_per_gpu"] = ds.batch.micro_batch_per_gpu;
  j["gradient_accumulation_steps"] = ds.batch.gradient_accumulation_steps;
  j["world_size"] = ds.batch.world_size;
  j["data_parallel_size"] = ds.batch.dp_size;
  j["fp16"] = {{"enabled", ds.fp16.enabled},
               {"auto_cast", ds.fp16.auto_cast},
               {"loss_scale", ds.fp16.loss_scale},
               {"initial_scale_power", ds.fp16.initial_scale_power},
               {"loss_scale_window", ds.fp16.loss_scale_window},
               {"hysteresis", ds.fp16.hysteresis},
               {"consecutive_hysteresis", ds.fp16.consecutive_hysteresis},
               {"min_loss_scale", ds.fp16.min_loss_scale}};
  j["bf16"] = {{"enabled", ds.bf16.enabled},
               {"immediate_grad_update", ds.bf16.immediate_grad_update},
               {"check_grad_overflow", ds.bf16.check_grad_overflow}};
  j["optimizer"] = optimizer_json(ds.optimizer);
  if (ds.scheduler.index() == 0) {
    j["scheduler"] = nullptr;
  } else {
    j["scheduler"] = {{"type", scheduler_name(ds.scheduler)},
                      {"params", scheduler_params(ds.scheduler)}};
  }
  j["zero_optimization"] = zero_json(ds.zero);
  const auto& p = ds.pipeline;
  j["pipeline"] = {{"stages", p.stages},
                   {"partition", partition_name(p)},
                   {"activation_checkpoint_interval", p.activation_checkpoint_interval},
                   {"seed_layers", p.seed_layers},
                   {"pipe_partitioned", p.pipe_partitioned},
                   {"grad_partitioned", p.grad_partitioned}};
  if (p.partition == PartitionMethod::kType)
    j["pipeline"]["partition_type"] = p.partition_type_regex;
  const auto& a = ds.activation_checkpointing;
  j["activation_checkpointing"] = {
      {"partition_activations", a.partition_activations},
      {"cpu_checkpointing", a.cpu_checkpointing},
      {"contiguous_memory_optimization", a.contiguous_memory_optimization},
      {"number_checkpoints", a.number_checkpoints ? Json(*a.number_checkpoints) : Json(nullptr)},
      {"synchronize_checkpoint_boundary", a.synchronize_checkpoint_boundary},
      {"profile", a.profile}};
  j["checkpoint"] = {{"tag_validation", ds.checkpoint.tag_validation},
                     {"load_universal", ds.checkpoint.load_universal},
                     {"use_node_local_storage", ds.checkpoint.use_node_local_storage}};
  j["tensorboard"] = monitor_json(ds.tensorboard);
  j["csv_monitor"] = monitor_json(ds.csv_monitor);
  j["wandb"] = {{"enabled", ds.wandb.enabled},
                {"group", ds.wandb.group},
                {"team", ds.wandb.team},
                {"project", ds.wandb.project}};
  j["gradient_clipping"] = ds.gradient_clipping;
  j["steps_per_print"] = ds.steps_per_print;
  j["wall_clock_breakdown"] = ds.wall_clock_breakdown;
  j["memory_breakdown"] = ds.memory_breakdown;
  const char* comm = comm_name(ds.communication_data_type);
  j["communication_data_type"] = comm ? Json(comm) : Json(nullptr);
  j["prescale_gradients"] = ds.prescale_gradients;
  j["gradient_predivide_factor"] = ds.gradient_predivide_factor;
  j["gradient_allreduce_op"] = ds.gradient_allreduce_sum ? "sum" : "mean";
  j["zero_allow_untested_optimizer"] = ds.zero_allow_untested_optimizer;
  return j;
}

Json to_json(const ModelConfig& m) {
  Json j;
  if (!m.preset.empty()) j["preset"] = m.preset;
  if (!m.hf_dir.empty()) j["from_hf"] = m.hf_dir;
  j["arch"] = m.arch;
  j["n_layer"] = m.n_layer;
  j["n_head"] = m.n_head;
  j["n_embd"] = m.n_embd;
  j["vocab_size"] = m.vocab_size;
  j["block_size"] = m.block_size;
  j["tie_embeddings"] = m.tie_embeddings;
  j["layer_norm_epsilon"] = m.layer_norm_epsilon;
  if (m.llama()) {
    j["n_kv_head"] = m.kv_heads();
    j["intermediate_size"] = m.mlp_width();
    j["rope_theta"] = m.rope_theta;
    if (m.rope_scaling) {
      j["rope_scaling"] = {
          {"rope_type", "llama3"},
          {"factor", m.rope_scaling->factor},
          {"low_freq_factor", m.rope_scaling->low_freq_factor},
          {"high_freq_factor", m.rope_scaling->high_freq_factor},
          {"original_max_position_embeddings", m.rope_scaling->original_max_position_embeddings}};
    }
  }
  j["parameters"] = m.parameter_count();
  return j;
}

ModelConfig model_from_json(const nlohmann::json& j) {
  ModelConfig c;
  c.preset = j.value("preset", "");
  c.arch = j.value("arch", "gpt");
  c.n_layer = j.at("n_layer");
  c.n_head = j.at("n_head");
  c.n_embd = j.at("n_embd");
  c.vocab_size = j.at("vocab_size");
  c.block_size = j.at("block_size");
  c.tie_embeddings = j.at("tie_embeddings");
  c.layer_norm_epsilon = j.value("layer_norm_epsilon", 1e-5);
  if (c.llama()) {
    c.n_kv_head = j.value("n_kv_head", int64_t{0});
    c.intermediate_size = j.value("intermediate_size", int64_t{0});
    c.rope_theta = j.value("rope_theta", 10000.0);
    if (j.contains("rope_scaling")) {
      const auto& r = j.at("rope_scaling");
      c.rope_scaling =
          RopeScaling{r.at("factor"), r.at("low_freq_factor"), r.at("high_freq_factor"),
                      r.at("original_max_position_embeddings")};
    }
  }
  return c;
}

Json to_json(const TrainConfig& cfg) {
  Json j;
  j["config"] = cfg.path.string();
  j["model"] = to_json(cfg.model);
  j["data"] = {{"train", cfg.data.train},
               {"val", cfg.data.val.empty() ? Json(nullptr) : Json(cfg.data.val)},
               {"val_fraction", cfg.data.val_fraction},
               {"seq_len", cfg.data.seq_len},
               {"shuffle", cfg.data.shuffle},
               {"format", cfg.data.format},
               {"tokenizer", cfg.data.tokenizer.empty() ? Json("bytes") : Json(cfg.data.tokenizer)},
               {"packing", cfg.data.packing},
               {"mask_prompt", cfg.data.mask_prompt},
               {"cache", cfg.data.cache}};
  if (cfg.data.text_template) {
    const auto sources = [](const std::vector<TextTemplate>& alternatives) {
      Json list = Json::array();
      for (const TextTemplate& t : alternatives) list.push_back(t.source);
      return list;
    };
    j["data"]["template"] = {{"prompt", sources(cfg.data.text_template->prompt)},
                             {"response", sources(cfg.data.text_template->response)}};
  } else if (!cfg.data.field.empty()) {
    j["data"]["field"] = cfg.data.field;
  }
  Json ds = to_json(cfg.ds);
  j["deepspeed_source"] = cfg.deepspeed_source;
  j["deepspeed"] = std::move(ds);
  const char* device = cfg.train.device == Device::kCpu    ? "cpu"
                       : cfg.train.device == Device::kCuda ? "cuda"
                                                           : "auto";
  j["train"] = {{"steps", cfg.train.steps},
                {"eval_every", cfg.train.eval_every},
                {"eval_batches", cfg.train.eval_batches},
                {"seed", cfg.train.seed},
                {"device", device},
                {"tokens_per_step", cfg.ds.batch.train_batch_size * cfg.data.seq_len}};
  j["checkpoint"] = {
      {"dir", cfg.checkpoint.dir.empty() ? Json(nullptr) : Json(cfg.checkpoint.dir)},
      {"save_every", cfg.checkpoint.save_every},
      {"resume", cfg.checkpoint.resume},
      {"keep", cfg.checkpoint.keep},
      {"save_on_signal", cfg.checkpoint.save_on_signal},
      {"export",
       cfg.checkpoint.export_path.empty() ? Json(nullptr) : Json(cfg.checkpoint.export_path)}};
  j["log"] = {{"metrics", cfg.log.metrics.empty() ? Json(nullptr) : Json(cfg.log.metrics)},
              {"level", cfg.log.level}};
  return j;
}

}  // namespace ds::config
