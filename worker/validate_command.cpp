#include "worker/validate_command.h"

#include <ostream>

#include "config/config_json.h"
#include "util/log.h"

namespace ds::worker {

void validate_command(const std::filesystem::path& config, int64_t world_size, std::ostream& out) {
  const config::TrainConfig cfg = config::load_train_config(config, world_size);
  std::error_code ec;
  if (cfg.data.train.find_first_of("*?[") == std::string::npos &&
      !std::filesystem::exists(cfg.data.train, ec)) {
    // Not an error here: the config is valid, the data may be produced later.
    log::warn("data.train {} does not exist (yet); training would stop here", cfg.data.train);
  }
  out << config::to_json(cfg).dump(2) << "\n";
}

}  // namespace ds::worker
