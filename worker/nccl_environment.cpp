#include "worker/nccl_environment.h"

#include <fmt/format.h>

#include <cstdlib>

namespace ds::worker {

EnvChange nccl_environment_change(const EnvMap& env) {
  EnvChange change;
  const auto ifname = env.find("DS_SOCKET_IFNAME");
  if (ifname != env.end() && !ifname->second.empty() && !env.contains("NCCL_SOCKET_IFNAME")) {
    change.set.emplace_back("NCCL_SOCKET_IFNAME", "=" + ifname->second);
  }
  if (const auto id = env.find("NCCL_COMM_ID"); id != env.end()) {
    change.unset.push_back("NCCL_COMM_ID");
    change.warnings.push_back(fmt::format(
        "NCCL_COMM_ID={} is ignored: a run makes several NCCL communicators, some at the same "
        "time on different ranks, and gives each its own id through the run's store, where "
        "NCCL_COMM_ID would send them all to one address",
        id->second));
  }
  return change;
}

void apply_environment_change(const EnvChange& change) {
  for (const auto& [name, value] : change.set) ::setenv(name.c_str(), value.c_str(), 1);
  for (const std::string& name : change.unset) ::unsetenv(name.c_str());
}

}  // namespace ds::worker
