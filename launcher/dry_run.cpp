#include "launcher/dry_run.h"

#include <cstdlib>

#include "launcher/host_info.h"
#include "util/error.h"

namespace ds::launcher {

namespace {

std::string master(const Plan& plan) {
  return fmt::format("{}:{}", plan.master_addr,
                     plan.master_port > 0 ? std::to_string(plan.master_port) : "<free port>");
}

// What the agent adds on the node. Exact for this host; for others it depends on
// the node, so it is described.
std::string node_dependent(const NodePlan& node) {
  if (node.local) {
    std::string out;
    if (!std::getenv("OMP_NUM_THREADS")) {
      out += fmt::format("OMP_NUM_THREADS={}", std::max(1, cpu_count() / std::max(1, node.size())));
    }
    if (gpu_count() > 0 && !node.share_gpus) {
      if (!out.empty()) out += ' ';
      out += "CUDA_VISIBLE_DEVICES=";
      out += node.devices();
    }
    return out;
  }
  return fmt::format(
      "OMP_NUM_THREADS=<cores of {} / {}> unless set there, "
      "CUDA_VISIBLE_DEVICES={} if it has GPUs",
      node.host.key(), node.size(), node.devices());
}

}  // namespace

void print_plan(const Plan& plan, std::FILE* out) {
  fmt::print(out, "dslaunch: dry run of run {}: {} ranks on {} node{}, master {}\n", plan.run_id,
             plan.world_size, plan.nodes.size(), plan.nodes.size() == 1 ? "" : "s", master(plan));
  if (plan.master_port <= 0) {
    fmt::print(out, "  (the master address and a free port are looked up on {} at launch)\n",
               plan.nodes.front().host.key());
  }
  for (const NodePlan& node : plan.nodes) {
    fmt::print(out, "node {}: {} ({}), slots {}{}\n", node.node_rank, node.host.spec(),
               node.local ? "this host, no ssh" : "ssh", node.devices(),
               node.share_gpus ? fmt::format("{} ranks sharing the GPUs", node.size()) : "");
    const std::string extra = node_dependent(node);
    for (int l = 0; l < node.size(); ++l) {
      const int rank = node.first_rank + l;
      fmt::print(out, "  rank {}: host {} local rank {} devices {}\n", rank, node.host.key(), l,
                 node.slots[l]);
      std::vector<std::string> words = {"env"};
      const EnvList env = rank_env(plan, node, l);
      for (const auto& [k, v] : env.items()) {
        words.push_back(k + "=" + (k == "DS_RUN_TOKEN" ? "<secret>" : v));
      }
      std::vector<std::string> argv = plan.argv;
      if (!node.program.empty()) argv[0] = node.program;
      words.insert(words.end(), argv.begin(), argv.end());
      fmt::print(out, "    cd {} && {}\n", shell_join({plan.workdir}), shell_join(words));
      if (!extra.empty()) fmt::print(out, "    + set by the node agent: {}\n", extra);
    }
  }
}

}  // namespace ds::launcher
