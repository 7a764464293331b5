#include "launcher/launch_options.h"

#include "launcher/env.h"
#include "util/error.h"

namespace ds::launcher {

void check_options(const LaunchOptions& o) {
  if (o.config.empty() && o.program.empty()) {
    throw UsageError("nothing to launch",
                     "give a train.cfg (dslaunch [options] train.cfg), or a program after -- "
                     "(dslaunch [options] -- CMD ARGS)");
  }
  if (o.num_gpus == 0 || o.num_gpus < -1) {
    throw UsageError(fmt::format("--num_gpus must be at least 1, not {}", o.num_gpus));
  }
  if (o.num_nodes == 0 || o.num_nodes < -1) {
    throw UsageError(fmt::format("--num_nodes must be at least 1, not {}", o.num_nodes));
  }
  if (o.master_port != -1 && (o.master_port < 1 || o.master_port > 65535)) {
    throw UsageError(fmt::format("--master_port must be in 1..65535, not {}", o.master_port));
  }
  if (o.ssh_port != -1 && (o.ssh_port < 1 || o.ssh_port > 65535)) {
    throw UsageError(fmt::format("--ssh_port must be in 1..65535, not {}", o.ssh_port));
  }
  if (!o.include.empty() && !o.exclude.empty()) {
    throw UsageError("--include and --exclude cannot be used together", "give one of them");
  }
  for (const std::string& kv : o.env) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || !valid_env_name(kv.substr(0, eq))) {
      throw UsageError(fmt::format("--env expects KEY=VALUE, not '{}'", kv));
    }
  }
  if (o.launcher != "ssh" && o.launcher != "slurm") {
    throw UsageError(fmt::format("--launcher must be ssh or slurm, not '{}'", o.launcher),
                     "ssh (the default) also runs nodes on this host without ssh");
  }
  if (o.kill_grace < 0 || o.kill_grace > 600) {
    throw UsageError(fmt::format("--kill_grace must be 0..600 seconds, not {}", o.kill_grace));
  }
  if (o.heartbeat_timeout < 1) {
    throw UsageError(
        fmt::format("--heartbeat_timeout must be at least 1 second, not {}", o.heartbeat_timeout));
  }
  if (o.node_rank != -1 && !o.no_ssh) {
    throw UsageError("--node_rank only makes sense with --no_ssh",
                     "with --no_ssh you start dslaunch on every node yourself, each with its "
                     "--node_rank");
  }
}

}  // namespace ds::launcher
