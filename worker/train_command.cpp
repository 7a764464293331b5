#include "worker/train_command.h"

#include "util/log.h"
#include "worker/interrupt.h"

namespace ds::worker {

void train_command(const TrainOptions& options) {
  config::TrainConfig cfg = config::load_train_config(options.config, /*world_size=*/1);
  log::set_level(cfg.log.level == "debug"   ? log::Level::kDebug
                 : cfg.log.level == "warn"  ? log::Level::kWarn
                 : cfg.log.level == "error" ? log::Level::kError
                                            : log::Level::kInfo);
  install_interrupt_handlers();
  Trainer trainer(std::move(cfg), options);
  trainer.run();
}

}  // namespace ds::worker
