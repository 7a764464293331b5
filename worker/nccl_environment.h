// The NCCL settings dsworker derives from its own: NCCL reads its variables once, at its first
// call, and takes these from the environment only, so they are set before any thread starts.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "worker/env_contract.h"

namespace ds::worker {

struct EnvChange {
  std::vector<std::pair<std::string, std::string>> set;
  std::vector<std::string> unset;
  std::vector<std::string> warnings;  // for the log: why a variable the user set is ignored
};

// - DS_SOCKET_IFNAME names the interface of the run's own traffic; NCCL's bootstrap and socket
//   transport take the same one unless NCCL_SOCKET_IFNAME says otherwise ("=eth1": NCCL's syntax
//   for that name exactly, not every name it starts).
// - NCCL_COMM_ID is dropped: it fixes the address of every communicator's bootstrap root, while a
//   run makes several communicators at once on different ranks (one per pipeline stage's data
//   group, ...), each with an id of its own passed through the run's store.
EnvChange nccl_environment_change(const EnvMap& env);

// Applies `change` to this process's environment. Not thread-safe (setenv): call it before the
// process starts threads.
void apply_environment_change(const EnvChange& change);

}  // namespace ds::worker
