#include "worker/train_command.h"

#include "util/log.h"
#include "worker/bootstrap.h"
#include "worker/interrupt.h"
#include "zero/process_group_comm.h"

namespace ds::worker {

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
  install_interrupt_handlers();

  std::unique_ptr<zero::DpComm> comm;
  Bootstrap boot;
  if (info.world_size > 1) {
    BootstrapOptions bo;
    bo.pipe_stages = static_cast<int>(cfg.ds.pipeline.stages);
    boot = bootstrap(bo, env);
    comm = std::make_unique<zero::ProcessGroupComm>(boot.groups.data);
  } else {
    comm = std::make_unique<zero::SingleRankComm>();
  }
  Trainer trainer(std::move(cfg), options, std::move(comm));
  trainer.run();
}

}  // namespace ds::worker
