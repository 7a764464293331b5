#include "launcher/launch_options.h"

#include "util/error.h"

namespace ds::launcher {

void check_options(const LaunchOptions& options) {
  if (options.command.empty()) {
    throw UsageError("nothing to launch", "give a train.cfg, or -- followed by a program");
  }
  if (options.num_gpus == 0 || options.num_gpus < -1) {
    throw UsageError(fmt::format("--num_gpus must be at least 1, not {}", options.num_gpus));
  }
  if (options.num_nodes == 0 || options.num_nodes < -1) {
    throw UsageError(fmt::format("--num_nodes must be at least 1, not {}", options.num_nodes));
  }
  if (options.master_port < 1 || options.master_port > 65535) {
    throw UsageError(fmt::format("--master_port must be in 1..65535, not {}", options.master_port));
  }
  if (!options.include.empty() && !options.exclude.empty()) {
    throw UsageError("--include and --exclude cannot be used together", "give one of them");
  }
  for (const std::string& kv : options.env) {
    if (kv.find('=') == std::string::npos || kv.front() == '=') {
      throw UsageError(fmt::format("--env expects KEY=VALUE, not '{}'", kv));
    }
  }
}

int launch(const LaunchOptions& options) {
  check_options(options);
  // Starting and supervising ranks is issue 5 (hostfiles, node agents, SSH).
  throw Error("launching ranks is not implemented yet in this build",
              "run a single rank directly with: dsworker train.cfg");
}

}  // namespace ds::launcher
