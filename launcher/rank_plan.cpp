#include "launcher/rank_plan.h"

#include <ctime>
#include <fstream>

#include "util/error.h"

namespace ds::launcher {

std::string NodePlan::devices() const {
  if (share_gpus) return "";
  std::string out;
  for (int s : slots) {
    if (!out.empty()) out += ',';
    out += std::to_string(s);
  }
  return out;
}

Plan make_plan(const std::vector<NodeSlots>& nodes) {
  Plan plan;
  for (const NodeSlots& n : nodes) {
    NodePlan node;
    node.node_rank = static_cast<int>(plan.nodes.size());
    node.host = n.host;
    node.slots = n.slots;
    node.share_gpus = n.share_gpus;
    node.first_rank = plan.world_size;
    plan.world_size += node.size();
    plan.nodes.push_back(std::move(node));
  }
  return plan;
}

EnvList rank_env(const Plan& plan, const NodePlan& node, int local_rank) {
  EnvList env = plan.forwarded;
  const auto set = [&](const char* key, const auto& value) {
    if constexpr (std::is_same_v<std::decay_t<decltype(value)>, int>) {
      env.set(key, std::to_string(value));
    } else {
      env.set(key, value);
    }
  };
  const int nnodes = static_cast<int>(plan.nodes.size());
  set("RANK", node.first_rank + local_rank);
  set("WORLD_SIZE", plan.world_size);
  set("LOCAL_RANK", local_rank);
  set("LOCAL_WORLD_SIZE", node.size());
  set("LOCAL_SIZE", node.size());
  set("NODE_RANK", node.node_rank);
  set("CROSS_RANK", node.node_rank);
  set("GROUP_RANK", node.node_rank);
  set("NNODES", nnodes);
  set("CROSS_SIZE", nnodes);
  set("MASTER_ADDR", plan.master_addr);
  set("MASTER_PORT", plan.master_port);
  set("DS_RUN_ID", plan.run_id);
  set("DS_RUN_TOKEN", plan.run_token);
  return env;
}

AgentPlan agent_plan(const Plan& plan, const NodePlan& node, int grace_ms, int heartbeat_ms) {
  AgentPlan a;
  a.run_id = plan.run_id;
  a.node_rank = node.node_rank;
  a.host = node.host.key();
  a.workdir = plan.workdir;
  a.argv = plan.argv;
  if (!node.program.empty() && !a.argv.empty()) a.argv[0] = node.program;
  a.devices = node.devices();
  a.grace_ms = grace_ms;
  a.heartbeat_ms = heartbeat_ms;
  for (int l = 0; l < node.size(); ++l) {
    a.ranks.push_back({node.first_rank + l, l, rank_env(plan, node, l)});
  }
  return a;
}

std::string new_run_token() {
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  unsigned char bytes[16] = {};
  urandom.read(reinterpret_cast<char*>(bytes), sizeof bytes);
  DS_CHECK(urandom.gcount() == sizeof bytes, "cannot read /dev/urandom");
  std::string out;
  for (unsigned char b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

std::string new_run_id() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  return std::string(stamp) + "-" + new_run_token().substr(0, 4);
}

}  // namespace ds::launcher
