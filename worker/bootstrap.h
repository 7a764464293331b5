// One call from the environment to a working run: parse the process contract, reach the
// run's TcpStore (rank 0 hosts it), rendezvous with every rank, create the world process
// group and the pipe x data groups. What every later part (trainer, ZeRO, pipeline, dsbench)
// starts with:
//
//   ds::worker::BootstrapOptions options;
//   options.pipe_stages = 2;
//   auto boot = ds::worker::bootstrap(options);
//   boot.world->allreduce(grads);
//   boot.groups.data->reduce_scatter(shard, grads);
#pragma once

#include <memory>
#include <optional>

#include "comm/process_group.h"
#include "comm/store.h"
#include "comm/topology.h"
#include "worker/env_contract.h"

namespace ds::worker {

struct BootstrapOptions {
  int pipe_stages = 1;
  // Override the environment (DS_RENDEZVOUS_TIMEOUT, DS_COLLECTIVE_TIMEOUT, DS_COMM_BACKEND).
  std::optional<std::chrono::milliseconds> rendezvous_timeout;
  std::optional<std::chrono::milliseconds> collective_timeout;
  std::optional<comm::Backend> backend;
};

struct Bootstrap {
  RankInfo info;
  std::shared_ptr<comm::Store> store;  // the run's own key space on the shared store
  std::shared_ptr<comm::ProcessGroup> world;
  comm::Topology topology;
  comm::TopologyGroups groups;  // this rank's data-parallel group and pipeline
};

// Collective over every rank of the run. Throws UsageError for a bad environment and Error
// when ranks do not meet (naming the missing ones) or the store is unreachable.
Bootstrap bootstrap(const BootstrapOptions& options = {},
                    const EnvMap& env = process_environment());

}  // namespace ds::worker
