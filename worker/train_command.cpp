#include "worker/train_command.h"

#include <numeric>

#include "config/document.h"
#include "pipeline/plan_report.h"
#include "util/log.h"
#include "worker/bootstrap.h"
#include "worker/device_choice.h"
#include "worker/gpu_sharing.h"
#include "worker/interrupt.h"
#include "worker/nccl_environment.h"
#include "zero/process_group_comm.h"

namespace ds::worker {
namespace {

// pipeline.stages read ahead of the full load, which needs the world size to resolve the
// batch triad (and refuses a world that the stages do not divide).
int64_t configured_pipeline_stages(const std::string& path) {
  const config::DocumentPtr doc = config::load_document(path, "train config");
  config::MapReader root(doc, doc->root, "");
  const YAML::Node node = root.raw("deepspeed");
  std::optional<config::MapReader> ds;
  if (node.IsScalar() && !node.IsNull()) {
    std::filesystem::path ds_path = node.Scalar();
    if (ds_path.is_relative()) ds_path = doc->dir / ds_path;
    ds = root.load_referenced("deepspeed", ds_path, "ds_config");
  } else {
    ds = root.get_map_or_empty("deepspeed");
  }
  std::optional<config::MapReader> pipe = ds->get_map("pipeline");
  return pipe ? pipe->get_int("stages", 1, config::Range::at_least(1)) : 1;
}

// Where this rank computes: train.device, LOCAL_RANK and the GPUs CUDA_VISIBLE_DEVICES leaves.
DeviceChoice choose_rank_device(const config::TrainConfig& cfg, const RankInfo& info,
                                const EnvMap& env) {
  // DS_EMULATED_DEVICE=1 (tests): the rank's device is host memory reached as a GPU's is
  // (tensor/device.h), so that multi-process tests run the device paths without a GPU.
  if (const auto it = env.find("DS_EMULATED_DEVICE"); it != env.end() && it->second == "1") {
    if (info.backend == comm::Backend::kNccl) {
      throw UsageError(
          "DS_COMM_BACKEND=nccl, but DS_EMULATED_DEVICE=1: the emulated device is "
          "host memory, which NCCL cannot move",
          "leave DS_COMM_BACKEND unset, or set it to gloo or shm");
    }
    return {tensor::Device::emulated(), false, info.backend,
            "emulated (DS_EMULATED_DEVICE=1: host memory used as a device's)"};
  }
  DeviceRequest request;
  request.device = cfg.train.device;
  request.backend = info.backend;
  request.local_rank = info.local_rank;
  request.local_world_size = info.local_world_size;
  if (cfg.train.device != config::Device::kCpu) {  // a CPU run never touches the CUDA runtime
    const VisibleDevices visible = query_visible_devices();
    request.visible_devices = visible.count;
    request.no_device_reason = visible.reason;
  }
  if (auto it = env.find("CUDA_VISIBLE_DEVICES"); it != env.end()) {
    request.cuda_visible_devices = it->second;
  }
  return choose_device(request);
}

// NCCL twins of the groups that move GPU buffers: the pipeline (activations and their
// gradients) and, when the engine keeps its states on the GPU (no ZeRO-Offload), the
// data-parallel group (its reductions and gathers) and the tied embedding's first and last
// stage. Collective over each group: every member makes the same calls in the same order.
void add_nccl_twins(TrainGroups& groups, const Bootstrap& boot, int cuda_device, bool states_on_gpu,
                    bool tie_embeddings) {
  const auto twin = [cuda_device](comm::ProcessGroup& group) {
    std::vector<int> ranks(static_cast<size_t>(group.size()));
    std::iota(ranks.begin(), ranks.end(), 0);
    return group.new_group(ranks, group.name() + ".nccl", comm::Backend::kNccl, cuda_device);
  };
  if (states_on_gpu && boot.groups.data->size() > 1) groups.device_data = twin(*boot.groups.data);
  if (groups.pipe) {
    groups.device_pipe = twin(*groups.pipe);
    if (states_on_gpu && tie_embeddings) {
      groups.device_tied = groups.device_pipe->new_group({0, groups.pipe->size() - 1}, "tied.nccl");
    }
  }
}

}  // namespace

void print_schedule_command(const std::string& config, std::optional<int64_t> world_size,
                            std::ostream& out) {
  if (!world_size) {
    const RankInfo info = parse_env_contract(process_environment());
    world_size = info.source != ContractSource::kSingle ? info.world_size
                                                        : configured_pipeline_stages(config);
  }
  pipeline::print_pipeline_plan(config::load_train_config(config, *world_size), out);
}

void train_command(const TrainOptions& options) {
  // Who we are comes first: the config's batch triad depends on the world size.
  const EnvMap env = process_environment();
  const RankInfo info = parse_env_contract(env);
  // dslaunch prefixes every line with the rank already.
  if (info.world_size > 1 && info.source != ContractSource::kLauncher) {
    log::set_prefix(fmt::format("dsworker[{}]", info.rank));
  }
  config::TrainConfig cfg = config::load_train_config(options.config, info.world_size);
  const log::Level level = cfg.log.level == "debug"   ? log::Level::kDebug
                           : cfg.log.level == "warn"  ? log::Level::kWarn
                           : cfg.log.level == "error" ? log::Level::kError
                                                      : log::Level::kInfo;
  // Under a launcher rank 0 speaks for the run; the others only warn and fail.
  log::set_level(info.rank == 0 ? level : std::max(level, log::Level::kWarn));
  // Before any thread starts (setenv is not thread-safe), and before NCCL first reads them.
  const EnvChange nccl_env = nccl_environment_change(env);
  apply_environment_change(nccl_env);
  install_interrupt_handlers();
  const DeviceChoice device = choose_rank_device(cfg, info, env);
  // A CPU run's output stays as it was; a GPU's is worth a line.
  if (device.device.is_cpu()) {
    log::debug("device: {}", device.summary);
  } else {
    log::info("device: {}", device.summary);
    for (const std::string& warning : nccl_env.warnings) {
      if (info.rank == 0) log::warn("{}", warning);
    }
  }

  TrainGroups groups;
  groups.device = device.device;
  Bootstrap boot;
  if (info.world_size > 1) {
    BootstrapOptions bo;
    bo.pipe_stages = static_cast<int>(cfg.ds.pipeline.stages);
    // The groups themselves move host memory. GPU ranks ask for Gloo (or shm, when
    // DS_COMM_BACKEND says so) whether they have a GPU of their own or share one: the requests
    // must match on every node, and each node only knows its own GPUs. Where NCCL takes the GPU
    // buffers below, the host groups carry scalars and checkpoints; where ranks share a GPU,
    // everything (the "fall back to Gloo over host memory").
    if (device.device.type == tensor::DeviceType::kCuda) {
      bo.backend =
          device.backend == comm::Backend::kShm ? comm::Backend::kShm : comm::Backend::kGloo;
    }
    boot = bootstrap(bo, env);
    groups.rank = boot.info.rank;
    groups.data = std::make_unique<zero::ProcessGroupComm>(boot.groups.data);
    groups.world = std::make_shared<zero::ProcessGroupComm>(boot.world);
    if (bo.pipe_stages > 1) {
      groups.pipe = boot.groups.pipe;
      groups.pipe_sums = std::make_shared<zero::ProcessGroupComm>(boot.groups.pipe);
      // The tied embedding lives on the first and the last stage (collective over the pipe).
      auto tied = boot.groups.pipe->new_group({0, bo.pipe_stages - 1}, "tied");
      if (tied && cfg.model.tie_embeddings) {
        groups.tied = std::make_shared<zero::ProcessGroupComm>(std::move(tied));
      }
    }
    // NCCL moves GPU buffers only when every rank can use it; two ranks sharing a GPU (or a
    // CPU rank) make them all stage those through host memory, so that every group agrees.
    const GpuBufferPath path = agree_gpu_buffer_path(device, gpu_identity(device.device, env),
                                                     info.backend, *boot.store, *groups.world);
    if (path.nccl) {
      add_nccl_twins(groups, boot, device.device.index, zero::states_on_device(cfg, device.device),
                     cfg.model.tie_embeddings);
    }
    if (!device.device.is_cpu()) {
      log::info(
          "collectives on GPU buffers: {}",
          path.nccl ? "NCCL" : fmt::format("staged through host memory ({})", path.why_staged));
    }
  } else {
    groups.data = std::make_unique<zero::SingleRankComm>();
  }
  Trainer trainer(std::move(cfg), options, std::move(groups));
  trainer.run();
}

}  // namespace ds::worker
