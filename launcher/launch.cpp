// launch(): options -> resources -> rank plan -> preflight -> agents -> supervision.
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>

#include "launcher/dry_run.h"
#include "launcher/exit_status.h"
#include "launcher/host_info.h"
#include "launcher/launch_options.h"
#include "launcher/local_runner.h"
#include "launcher/signals.h"
#include "launcher/slurm.h"
#include "launcher/ssh_runner.h"
#include "launcher/supervisor.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace ds::launcher {

namespace {

constexpr int kDeepSpeedPort = 29500;

void note(const std::string& text) {
  if (!text.empty()) fmt::print(stderr, "dslaunch: {}\n", text);
}

std::string env_or(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

std::vector<NodeSlots> choose_resources(const LaunchOptions& o) {
  ResourceRequest request{o.include, o.exclude, o.num_nodes, o.num_gpus, !o.hostfile.empty()};
  if (!o.hostfile.empty()) return select_resources(read_hostfile(o.hostfile), request);
  if (o.num_nodes > 1) {
    throw UsageError(
        fmt::format("--num_nodes {} needs a --hostfile naming the nodes", o.num_nodes));
  }
  // This host: its GPUs, or (CPU) --num_gpus processes, default 1.
  const int gpus = gpu_count();
  if (gpus > 0) {
    note(apply_cuda_visible_devices(env_or("CUDA_VISIBLE_DEVICES"), request));
    if (o.num_gpus > gpus) {
      // Several ranks per GPU (issue 10): each sees every GPU and takes one round-robin.
      note(
          fmt::format("--num_gpus {} on a host with {} GPU{}: the ranks share them, and their "
                      "collectives run over host memory",
                      o.num_gpus, gpus, gpus == 1 ? "" : "s"));
      std::vector<NodeSlots> nodes = select_resources(local_host(o.num_gpus), request);
      for (NodeSlots& n : nodes) n.share_gpus = true;
      return nodes;
    }
  }
  return select_resources(local_host(gpus), request);
}

// The program each rank runs, and where to look for it on a node.
std::vector<std::string> program_candidates(const LaunchOptions& o) {
  if (!o.program.empty()) return {o.program.front()};
  if (!o.worker_path.empty()) return {o.worker_path};
  const std::string beside = (fs::path(self_exe()).parent_path() / "dsworker").string();
  return {beside, "dsworker"};
}

Plan build_plan(const LaunchOptions& o) {
  Plan plan = make_plan(choose_resources(o));
  for (NodePlan& n : plan.nodes) n.local = o.no_ssh || is_local_host(n.host);
  const auto candidates = program_candidates(o);
  if (!o.program.empty()) {
    plan.argv = o.program;
  } else {
    std::error_code ec;
    plan.argv = {fs::exists(candidates.front(), ec) ? candidates.front() : candidates.back(),
                 o.config};
    plan.argv.insert(plan.argv.end(), o.config_args.begin(), o.config_args.end());
  }
  plan.workdir = o.workdir.empty() ? fs::current_path().string()
                                   : fs::absolute(o.workdir).lexically_normal().string();
  std::vector<std::string> dirs;
  const std::string home = env_or("HOME");
  if (!home.empty()) dirs.push_back(home);
  if (fs::current_path() != fs::path(home)) dirs.push_back(fs::current_path().string());
  std::vector<std::string> files;
  plan.forwarded = forwarded_env({o.env, o.env_prefix, dirs, current_environ()}, &files);
  for (const std::string& f : files) note("forwarding the variables of " + f);
  plan.run_id = o.run_id.empty() ? new_run_id() : o.run_id;
  plan.run_token = new_run_token();

  // MASTER_ADDR/PORT: the first node's address as it is reached, a free port there.
  plan.master_addr = o.master_addr;
  plan.master_port = o.master_port;
  const NodePlan& first = plan.nodes.front();
  if (first.local) {
    bool all_local = true;
    for (const NodePlan& n : plan.nodes) all_local = all_local && n.local;
    if (plan.master_addr.empty()) {
      plan.master_addr =
          all_local || o.no_ssh ? "127.0.0.1" : route_address(plan.nodes[1].host.host);
      if (o.no_ssh && plan.nodes.size() > 1) plan.master_addr = first.host.host;
      if (plan.master_addr.empty()) plan.master_addr = first.host.host;
    }
    if (plan.master_port < 0) plan.master_port = o.no_ssh ? kDeepSpeedPort : free_port();
  } else if (plan.master_addr.empty()) {
    plan.master_addr = first.host.host;  // refined by the preflight
  }
  return plan;
}

PreflightRequest preflight_request(const LaunchOptions& o, const NodePlan& node) {
  PreflightRequest r;
  r.workdir = o.workdir.empty() ? fs::current_path().string()
                                : fs::absolute(o.workdir).lexically_normal().string();
  if (!node.local) {
    r.launcher_candidates = o.launcher_path.empty()
                                ? std::vector<std::string>{self_exe(), "dslaunch"}
                                : std::vector<std::string>{o.launcher_path};
  }
  r.program_candidates = program_candidates(o);
  if (o.program.empty()) r.required_file = o.config;
  r.want_address = node.node_rank == 0 && !node.local;
  return r;
}

// Checks every node, all at once; throws UsageError listing every problem.
std::vector<NodeFacts> preflight(const LaunchOptions& o, Plan& plan,
                                 const std::vector<NodePlan*>& nodes, SshRunner& ssh,
                                 LocalRunner& local) {
  std::vector<const NodePlan*> local_nodes, remote_nodes;
  std::vector<PreflightRequest> local_req, remote_req;
  for (const NodePlan* n : nodes) {
    (n->local ? local_nodes : remote_nodes).push_back(n);
    (n->local ? local_req : remote_req).push_back(preflight_request(o, *n));
  }
  std::vector<NodeFacts> remote_facts;
  if (!remote_nodes.empty()) {
    note(fmt::format("connecting to {} node{}", remote_nodes.size(),
                     remote_nodes.size() == 1 ? "" : "s"));
    remote_facts = ssh.preflight(remote_nodes, remote_req);
  }
  std::vector<NodeFacts> local_facts = local.preflight(local_nodes, local_req);
  std::vector<NodeFacts> facts(plan.nodes.size());
  std::vector<std::string> problems;
  for (size_t i = 0; i < local_nodes.size(); ++i) facts[local_nodes[i]->node_rank] = local_facts[i];
  for (size_t i = 0; i < remote_nodes.size(); ++i) {
    facts[remote_nodes[i]->node_rank] = remote_facts[i];
  }
  for (const NodePlan* n : nodes) {
    const NodeFacts& f = facts[n->node_rank];
    problems.insert(problems.end(), f.problems.begin(), f.problems.end());
    plan.nodes[n->node_rank].program = f.program;
  }
  if (!problems.empty()) {
    std::string text =
        fmt::format("preflight found {} problem{}; nothing was started:", problems.size(),
                    problems.size() == 1 ? "" : "s");
    for (const std::string& p : problems) text += "\n  - " + p;
    throw UsageError(text, "fix these and run again (--dry-run shows the plan without connecting)");
  }
  const NodeFacts& first = facts[0];
  if (!plan.nodes[0].local) {
    if (o.master_addr.empty() && !first.address.empty()) plan.master_addr = first.address;
    if (plan.master_port < 0)
      plan.master_port = first.free_port > 0 ? first.free_port : kDeepSpeedPort;
  }
  return facts;
}

int run_slurm(const LaunchOptions& o, Plan& plan, SignalPipe& signals) {
  if (plan.master_port < 0) plan.master_port = kDeepSpeedPort;
  if (o.hostfile.empty() && o.master_addr.empty()) plan.master_addr.clear();
  const SrunCommand command = srun_command(plan, !o.hostfile.empty());
  note(fmt::format("run {}: master {}:{}", plan.run_id,
                   plan.master_addr.empty() ? "<from SLURM_* in dsworker>" : plan.master_addr,
                   plan.master_port));
  fmt::print(o.dry_run ? stdout : stderr, "{}{}\n",
             o.dry_run ? "" : "dslaunch: ", srun_line(command));
  if (o.dry_run) return 0;
  return run_srun(command, signals);
}

}  // namespace

int launch(const LaunchOptions& o) {
  check_options(o);
  // A node agent that went away shows up as a failed write, not as our death.
  ::signal(SIGPIPE, SIG_IGN);
  // Handlers first: a Ctrl-C during the preflight must still end cleanly.
  SignalPipe signals{SIGINT, SIGTERM, SIGHUP};
  Plan plan = build_plan(o);
  if (o.launcher == "slurm") return run_slurm(o, plan, signals);

  // The nodes this invocation starts: all, or with --no_ssh only --node_rank's.
  std::vector<NodePlan*> nodes;
  if (o.no_ssh) {
    const int n = static_cast<int>(plan.nodes.size());
    if (n > 1 && o.node_rank < 0) {
      throw UsageError(fmt::format("--no_ssh with {} nodes needs --node_rank", n),
                       "start dslaunch on each node with its --node_rank (0 is the first)");
    }
    const int r = std::max(0, o.node_rank);
    if (r >= n) throw UsageError(fmt::format("--node_rank {} but there are {} nodes", r, n));
    nodes.push_back(&plan.nodes[r]);
  } else {
    for (NodePlan& n : plan.nodes) nodes.push_back(&n);
  }
  if (o.dry_run) {
    print_plan(plan, stdout);
    return 0;
  }

  SshRunner ssh(SshSettings{o.ssh_config, o.ssh_known_hosts, o.ssh_identity, o.ssh_port,
                            o.ssh_accept_new, o.ssh_timeout},
                plan.run_id);
  LocalRunner local;
  const std::vector<NodeFacts> facts = preflight(o, plan, nodes, ssh, local);
  for (int sig : signals.drain()) {
    note(fmt::format("got {} before anything started", signal_name(sig)));
    return 128 + sig;
  }
  note(fmt::format("run {}: {} rank{} on {} node{}, master {}:{}", plan.run_id, plan.world_size,
                   plan.world_size == 1 ? "" : "s", plan.nodes.size(),
                   plan.nodes.size() == 1 ? "" : "s", plan.master_addr, plan.master_port));

  std::vector<AgentConnection> agents;
  for (NodePlan* n : nodes) {  // this host first: fork before any pump thread runs
    if (n->local) agents.push_back({n, local.start(*n, facts[n->node_rank])});
  }
  for (NodePlan* n : nodes) {
    if (!n->local) agents.push_back({n, ssh.start(*n, facts[n->node_rank])});
  }
  SupervisorOptions so;
  so.prefix = o.prefix;
  so.log_dir = o.log_dir;
  so.grace_ms = static_cast<int>(o.kill_grace * 1000);
  so.heartbeat_ms = static_cast<int>(o.heartbeat_timeout * 1000);
  so.tail_lines = o.tail_lines;
  return supervise(plan, std::move(agents), so, &signals);
}

}  // namespace ds::launcher
