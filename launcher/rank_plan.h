// The rank plan: which rank runs where, with which devices and environment.
// Pure data and pure functions, so --dry-run prints exactly what a launch does.
#pragma once

#include <string>
#include <vector>

#include "launcher/env.h"
#include "launcher/protocol.h"
#include "launcher/resources.h"

namespace ds::launcher {

struct NodePlan {
  int node_rank = 0;
  HostEntry host;
  std::vector<int> slots;   // device indices; one rank per slot
  int first_rank = 0;       // this node's ranks are first_rank .. first_rank + size - 1
  bool local = false;       // started on this machine, without SSH
  std::string program;      // argv[0] as the preflight found it on this node; empty: plan's
  bool share_gpus = false;  // NodeSlots::share_gpus
  int size() const { return static_cast<int>(slots.size()); }
  // "0,1,3": CUDA_VISIBLE_DEVICES (DeepSpeed: the slot list); "" when the ranks share the
  // GPUs (the variable is then left as it is).
  std::string devices() const;
};

struct Plan {
  std::vector<NodePlan> nodes;
  int world_size = 0;
  std::string master_addr;
  int master_port = 0;
  std::string run_id;
  std::string run_token;          // DS_RUN_TOKEN: the Store's shared secret; never printed
  std::vector<std::string> argv;  // what each rank runs
  std::string workdir;
  EnvList forwarded;  // --env, --env-prefix, .dsenv
};

// Ranks numbered in hostfile order, node by node, slot by slot.
Plan make_plan(const std::vector<NodeSlots>& nodes);

// The process contract of DESIGN.md for one rank (RANK, WORLD_SIZE, LOCAL_RANK,
// ..., DS_RUN_TOKEN) over the forwarded variables. The node-dependent ones —
// CUDA_VISIBLE_DEVICES when the node has GPUs, OMP_NUM_THREADS when unset — are
// added by the node agent, which knows the node.
EnvList rank_env(const Plan& plan, const NodePlan& node, int local_rank);

// What node `node` of the plan is told to run.
AgentPlan agent_plan(const Plan& plan, const NodePlan& node, int grace_ms, int heartbeat_ms);

// 16 random bytes from /dev/urandom as hex.
std::string new_run_token();
// A readable id unique enough for logs: yyyymmdd-hhmmss-<4 hex>.
std::string new_run_id();

}  // namespace ds::launcher
