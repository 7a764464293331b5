// The ds_config "zero_optimization" section: DeepSpeedZeroConfig's keys, defaults,
// aliases (stage3_*) and deprecated spellings (cpu_offload*), mapped as DeepSpeed does.
#include "config/ds_config.h"
#include "util/log.h"

namespace ds::config {
namespace {

const std::vector<std::string> kDevices = {"none", "cpu", "nvme"};

OffloadDevice device_of(const std::string& name) {
  if (name == "cpu") return OffloadDevice::kCpu;
  if (name == "nvme") return OffloadDevice::kNvme;
  return OffloadDevice::kNone;
}

void require_nvme_path(MapReader& m, OffloadDevice device, const std::string& path) {
  if (device == OffloadDevice::kNvme && path.empty()) {
    m.fail("device", "device \"nvme\" needs an nvme_path (a folder on a fast local disk)");
  }
}

OffloadOptimizerConfig read_offload_optimizer(MapReader& m) {
  OffloadOptimizerConfig o;
  o.device = device_of(m.get_choice("device", "none", kDevices));
  o.nvme_path = m.get_string("nvme_path", "");
  o.buffer_count = m.get_int("buffer_count", 4, Range::at_least(1));
  o.pin_memory = m.get_bool("pin_memory", true);
  o.pipeline_read = m.get_bool("pipeline_read", false);
  o.pipeline_write = m.get_bool("pipeline_write", false);
  o.fast_init = m.get_bool("fast_init", false);
  o.ratio = m.get_double("ratio", 1.0, Range::between(0, 1));
  if (m.get_bool("super_offload", false)) m.refuse_unsupported("super_offload", "SuperOffload");
  (void)m.get_double("cpuadam_cores_perc", 0.8, Range::between(0, 1));
  require_nvme_path(m, o.device, o.nvme_path);
  m.finish();
  return o;
}

OffloadParamConfig read_offload_param(MapReader& m) {
  OffloadParamConfig o;
  o.device = device_of(m.get_choice("device", "none", kDevices));
  o.nvme_path = m.get_string("nvme_path", "");
  o.buffer_count = m.get_int("buffer_count", 5, Range::at_least(1));
  o.buffer_size = m.get_int("buffer_size", 100'000'000, Range::at_least(1));
  o.max_in_cpu = m.get_int("max_in_cpu", 1'000'000'000, Range::at_least(0));
  o.pin_memory = m.get_bool("pin_memory", true);
  require_nvme_path(m, o.device, o.nvme_path);
  m.finish();
  return o;
}

// Keys of DeepSpeed features dstrain does not implement: accepted only with the
// value that leaves the feature off.
void refuse_enabled_features(MapReader& z) {
  struct Off {
    const char* key;
    bool off_value;
    const char* what;
  };
  static const Off kBoolFeatures[] = {
      {"elastic_checkpoint", false, "elastic checkpoints (dstrain checkpoints reshard anyway)"},
      {"legacy_stage1", false, "the legacy stage-1 implementation"},
      {"zero_quantized_weights", false, "ZeRO++ quantized weights"},
      {"zero_quantized_nontrainable_weights", false, "ZeRO++ quantized weights"},
      {"zero_quantized_gradients", false, "ZeRO++ quantized gradients"},
      {"mics_hierarchical_params_gather", false, "MiCS"},
  };
  for (const Off& f : kBoolFeatures) {
    if (z.get_bool(f.key, f.off_value) != f.off_value) {
      z.refuse_unsupported(f.key, f.what);
    }
  }
  if (z.get_int("zero_hpz_partition_size", 1) != 1) {
    z.refuse_unsupported("zero_hpz_partition_size", "ZeRO++ hierarchical partitioning");
  }
  if (z.get_int("mics_shard_size", -1) > 0) z.refuse_unsupported("mics_shard_size", "MiCS");
  z.refuse_unsupported("zeropp_loco_param", "ZeRO++ LoCo");
  const std::string granularity =
      z.pick({"module_granularity_threshold", "stage3_module_granularity_threshold"});
  if (z.get_int(granularity, 0) != 0) {
    z.refuse_unsupported(granularity, "stage-3 module fusing (dstrain gathers by layer)");
  }
  z.refuse_unsupported("leaf_module", "stage-3 leaf modules (dstrain gathers by layer)");
  z.refuse_unsupported("zenflow", "ZenFlow");
  // Tuning knobs of DeepSpeed's own implementation with no meaning here: accepted
  // (docs/config.md says so) so that stock configs load.
  for (const char* knob :
       {"use_multi_rank_bucket_allreduce", "memory_efficient_linear", "override_module_apply"}) {
    (void)z.get_bool(knob, true);
  }
  for (const char* knob : {"pipeline_loading_checkpoint", "log_trace_cache_warnings",
                           "enable_sanity_checks", "save_muon_momentum_buffer_in_memory"}) {
    (void)z.get_bool(knob, false);
  }
  (void)z.get_bool(
      z.pick({"use_all_reduce_for_fetch_params", "stage3_use_all_reduce_for_fetch_params"}), false);
  (void)z.get_bool(z.pick({"allgather_sequential", "stage3_allgather_sequential"}), false);
}

}  // namespace

ZeroConfig parse_zero(MapReader& z) {
  ZeroConfig c;
  c.stage = z.get_int("stage", 0, Range::between(0, 3));
  c.contiguous_gradients = z.get_bool("contiguous_gradients", true);
  if (z.has("overlap_comm") && !z.is_auto("overlap_comm")) {
    c.overlap_comm = z.get_bool("overlap_comm", false);
  }
  c.reduce_scatter = z.get_bool("reduce_scatter", true);
  c.reduce_bucket_size = z.get_int("reduce_bucket_size", 500'000'000, Range::at_least(1));
  c.allgather_partitions = z.get_bool("allgather_partitions", true);
  c.allgather_bucket_size = z.get_int("allgather_bucket_size", 500'000'000, Range::at_least(1));
  c.load_from_fp32_weights = z.get_bool("load_from_fp32_weights", true);
  c.round_robin_gradients = z.get_bool("round_robin_gradients", false);
  c.sub_group_size = z.get_int("sub_group_size", 1'000'000'000, Range::at_least(1));
  c.prefetch_bucket_size =
      z.get_int(z.pick({"prefetch_bucket_size", "stage3_prefetch_bucket_size"}), 50'000'000,
                Range::at_least(0));
  c.param_persistence_threshold =
      z.get_int(z.pick({"param_persistence_threshold", "stage3_param_persistence_threshold"}),
                100'000, Range::at_least(0));
  c.model_persistence_threshold =
      z.get_int(z.pick({"model_persistence_threshold", "stage3_model_persistence_threshold"}),
                INT64_MAX, Range::at_least(0));
  c.max_live_parameters = z.get_int(z.pick({"max_live_parameters", "stage3_max_live_parameters"}),
                                    1'000'000'000, Range::at_least(0));
  c.max_reuse_distance = z.get_int(z.pick({"max_reuse_distance", "stage3_max_reuse_distance"}),
                                   1'000'000'000, Range::at_least(0));
  c.gather_16bit_weights_on_model_save = z.get_bool(
      z.pick({"gather_16bit_weights_on_model_save", "stage3_gather_16bit_weights_on_model_save",
              "stage3_gather_fp16_weights_on_model_save"}),
      false);
  c.ignore_unused_parameters = z.get_bool("ignore_unused_parameters", true);
  refuse_enabled_features(z);

  // offload_optimizer, or the deprecated cpu_offload. Like DeepSpeed, the deprecated
  // cpu_offload_use_pin_memory is read but not carried over: pin_memory keeps its default.
  if (z.has("cpu_offload_use_pin_memory")) {
    (void)z.get_bool("cpu_offload_use_pin_memory", false);
    log::warn(
        "{}: zero_optimization.cpu_offload_use_pin_memory is deprecated and has no effect; "
        "use offload_optimizer.pin_memory / offload_param.pin_memory",
        z.document().name);
  }
  if (auto m = z.get_map("offload_optimizer")) {
    if (z.has("cpu_offload")) {
      z.fail("cpu_offload", "given together with offload_optimizer, its newer spelling",
             "keep only offload_optimizer");
    }
    c.offload_optimizer = read_offload_optimizer(*m);
  } else if (z.get_bool("cpu_offload", false)) {
    c.offload_optimizer.device = OffloadDevice::kCpu;
  }
  if (auto m = z.get_map("offload_param")) {
    if (z.has("cpu_offload_param")) {
      z.fail("cpu_offload_param", "given together with offload_param, its newer spelling",
             "keep only offload_param");
    }
    c.offload_param = read_offload_param(*m);
  } else if (z.get_bool("cpu_offload_param", false)) {
    c.offload_param.device = OffloadDevice::kCpu;
  }

  // Which offloads each stage can do (DeepSpeed's rules).
  const bool offloads_optimizer = c.offload_optimizer.device != OffloadDevice::kNone;
  if (offloads_optimizer && c.stage == 0) {
    z.fail(z.has("offload_optimizer") ? "offload_optimizer" : "cpu_offload",
           "optimizer offload needs ZeRO stage 1, 2 or 3, but stage is 0");
  }
  if (c.offload_optimizer.ratio < 1.0 && c.stage != 3) {
    z.fail("offload_optimizer", "partial offloading (ratio < 1) needs ZeRO stage 3");
  }
  if (c.offload_optimizer.device == OffloadDevice::kNvme && c.stage != 3) {
    z.fail("offload_optimizer",
           fmt::format("offloading the optimizer to nvme needs ZeRO stage 3 (ZeRO-Infinity), "
                       "but stage is {}",
                       c.stage),
           "use device \"cpu\" below stage 3");
  }
  if (c.offload_param.device != OffloadDevice::kNone && c.stage != 3) {
    z.fail(z.has("offload_param") ? "offload_param" : "cpu_offload_param",
           fmt::format("parameter offload needs ZeRO stage 3, but stage is {}", c.stage),
           "set zero_optimization.stage to 3, or remove offload_param");
  }
  z.finish();
  return c;
}

}  // namespace ds::config
