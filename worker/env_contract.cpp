#include "worker/env_contract.h"

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <optional>

#include "util/error.h"

extern char** environ;

namespace ds::worker {
namespace {

using std::chrono::milliseconds;

std::optional<std::string> lookup(const EnvMap& env, const std::string& name) {
  auto it = env.find(name);
  if (it == env.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

int parse_int(const std::string& name, const std::string& text) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw UsageError(fmt::format("{}='{}' is not a whole number", name, text),
                     fmt::format("set {} to a non-negative integer", name));
  }
  return value;
}

// The first of `names` that is set, parsed; or `fallback`.
std::optional<int> int_var(const EnvMap& env, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (auto text = lookup(env, name)) return parse_int(name, *text);
  }
  return std::nullopt;
}

// Aliases (LOCAL_WORLD_SIZE and LOCAL_SIZE, ...) must agree when both are set.
std::optional<int> agreeing(const EnvMap& env, const char* a, const char* b) {
  const auto va = int_var(env, {a});
  const auto vb = int_var(env, {b});
  if (va && vb && *va != *vb) {
    throw UsageError(fmt::format("{}={} and {}={} disagree", a, *va, b, *vb),
                     fmt::format("set only one of {} and {}, or the same value in both", a, b));
  }
  return va ? va : vb;
}

milliseconds seconds_var(const EnvMap& env, const char* name, milliseconds fallback) {
  auto text = lookup(env, name);
  if (!text) return fallback;
  double seconds = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), seconds);
  if (ec != std::errc() || end != text->data() + text->size() || !(seconds > 0) ||
      !std::isfinite(seconds)) {
    throw UsageError(fmt::format("{}='{}' is not a positive number of seconds", name, *text),
                     fmt::format("e.g. {}=600", name));
  }
  return milliseconds(static_cast<int64_t>(std::llround(seconds * 1000.0)));
}

void check_range(const char* name, int value, const char* bound_name, int bound) {
  if (value < 0 || value >= bound) {
    throw UsageError(
        fmt::format("{}={} is outside 0..{} ({}={})", name, value, bound - 1, bound_name, bound),
        "the launcher must give every rank consistent values");
  }
}

RankInfo from_launcher(const EnvMap& env) {
  RankInfo info;
  info.source = ContractSource::kLauncher;
  const auto rank = int_var(env, {"RANK"});
  const auto world = int_var(env, {"WORLD_SIZE"});
  if (!rank || !world) {
    throw UsageError(fmt::format("{} is set but {} is not", rank ? "RANK" : "WORLD_SIZE",
                                 rank ? "WORLD_SIZE" : "RANK"),
                     "set both RANK and WORLD_SIZE (dslaunch and torchrun do), or neither");
  }
  info.rank = *rank;
  info.world_size = *world;
  info.local_rank = int_var(env, {"LOCAL_RANK"}).value_or(info.rank);
  info.local_world_size = agreeing(env, "LOCAL_WORLD_SIZE", "LOCAL_SIZE").value_or(info.world_size);
  info.node_rank =
      agreeing(env, "NODE_RANK", "GROUP_RANK").value_or(int_var(env, {"CROSS_RANK"}).value_or(0));
  info.nnodes = agreeing(env, "NNODES", "CROSS_SIZE").value_or(0);
  if (info.nnodes == 0) {
    info.nnodes = info.local_world_size > 0 ? info.world_size / info.local_world_size : 1;
  }
  return info;
}

RankInfo from_slurm(const EnvMap& env) {
  RankInfo info;
  info.source = ContractSource::kSlurm;
  info.rank = *int_var(env, {"SLURM_PROCID"});
  const auto world = int_var(env, {"SLURM_NTASKS", "SLURM_NPROCS"});
  if (!world) {
    throw UsageError("SLURM_PROCID is set but SLURM_NTASKS is not",
                     "start the ranks with srun inside an allocation (srun sets both)");
  }
  info.world_size = *world;
  info.local_rank = int_var(env, {"SLURM_LOCALID"}).value_or(0);
  info.node_rank = int_var(env, {"SLURM_NODEID"}).value_or(0);
  info.nnodes = int_var(env, {"SLURM_NNODES", "SLURM_JOB_NUM_NODES"}).value_or(1);
  if (auto per_node = int_var(env, {"SLURM_NTASKS_PER_NODE"})) {
    info.local_world_size = *per_node;
  } else if (auto layout = lookup(env, "SLURM_TASKS_PER_NODE")) {
    info.local_world_size = slurm_tasks_on_node(*layout, info.node_rank);
  } else {
    info.local_world_size = info.world_size / std::max(1, info.nnodes);
  }
  // Rank 0 (which hosts the store) runs on the allocation's first node under Slurm's default
  // block distribution, so the node list is preferred over SLURM_LAUNCH_NODE_IPADDR, which is
  // wherever srun ran (a login node, with salloc).
  if (auto addr = lookup(env, "MASTER_ADDR")) {
    info.master_addr = *addr;
  } else if (auto nodes = lookup(env, "SLURM_JOB_NODELIST")) {
    info.master_addr = first_slurm_host(*nodes);
  } else if (auto nodes2 = lookup(env, "SLURM_NODELIST")) {
    info.master_addr = first_slurm_host(*nodes2);
  } else if (auto launch = lookup(env, "SLURM_LAUNCH_NODE_IPADDR")) {
    info.master_addr = *launch;
  } else if (info.world_size > 1) {
    throw UsageError("cannot tell where rank 0 runs: MASTER_ADDR and SLURM_JOB_NODELIST are unset",
                     "export MASTER_ADDR=<rank 0's host> before srun");
  }
  // Each job gets its own port unless MASTER_PORT says otherwise, so two jobs sharing a node
  // do not collide.
  if (!lookup(env, "MASTER_PORT")) {
    if (auto job = int_var(env, {"SLURM_JOB_ID"})) info.master_port = 20000 + *job % 20000;
  }
  const std::string job = lookup(env, "SLURM_JOB_ID").value_or("0");
  info.run_id = fmt::format("slurm-{}.{}", job, lookup(env, "SLURM_STEP_ID").value_or("0"));
  return info;
}

RankInfo from_open_mpi(const EnvMap& env) {
  RankInfo info;
  info.source = ContractSource::kOpenMpi;
  info.rank = *int_var(env, {"OMPI_COMM_WORLD_RANK"});
  const auto world = int_var(env, {"OMPI_COMM_WORLD_SIZE"});
  if (!world) {
    throw UsageError("OMPI_COMM_WORLD_RANK is set but OMPI_COMM_WORLD_SIZE is not",
                     "start the ranks with mpirun (it sets both)");
  }
  info.world_size = *world;
  info.local_rank = int_var(env, {"OMPI_COMM_WORLD_LOCAL_RANK"}).value_or(0);
  info.local_world_size = int_var(env, {"OMPI_COMM_WORLD_LOCAL_SIZE"}).value_or(info.world_size);
  // mpirun's default by-slot mapping fills one node before the next.
  info.nnodes = std::max(1, info.world_size / std::max(1, info.local_world_size));
  info.node_rank = info.rank / std::max(1, info.local_world_size);
  if (!lookup(env, "MASTER_ADDR") && info.world_size > 1) {
    throw UsageError("MASTER_ADDR is not set (Open MPI does not provide one)",
                     "pass rank 0's host to every rank: mpirun -x MASTER_ADDR=<host> ...");
  }
  return info;
}

}  // namespace

EnvMap process_environment() {
  EnvMap env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string entry(*e);
    const size_t eq = entry.find('=');
    if (eq != std::string::npos) env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return env;
}

std::string_view contract_source_name(ContractSource source) {
  switch (source) {
    case ContractSource::kSingle:
      return "single";
    case ContractSource::kLauncher:
      return "launcher";
    case ContractSource::kSlurm:
      return "slurm";
    case ContractSource::kOpenMpi:
      return "openmpi";
  }
  return "?";
}

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry ends at a comma outside brackets; a bracket range keeps its first value.
  std::string host;
  size_t i = 0;
  for (; i < nodelist.size() && nodelist[i] != ',' && nodelist[i] != '['; ++i) host += nodelist[i];
  if (i < nodelist.size() && nodelist[i] == '[') {
    ++i;
    while (i < nodelist.size() && nodelist[i] != '-' && nodelist[i] != ',' && nodelist[i] != ']') {
      host += nodelist[i++];
    }
  }
  if (host.empty()) {
    throw UsageError(fmt::format("SLURM_JOB_NODELIST='{}' names no host", nodelist),
                     "set MASTER_ADDR to rank 0's host");
  }
  return host;
}

int slurm_tasks_on_node(const std::string& tasks_per_node, int node) {
  int seen = 0;
  size_t i = 0;
  while (i < tasks_per_node.size()) {
    size_t end = tasks_per_node.find(',', i);
    if (end == std::string::npos) end = tasks_per_node.size();
    const std::string item = tasks_per_node.substr(i, end - i);
    const size_t paren = item.find("(x");
    const int tasks = parse_int("SLURM_TASKS_PER_NODE", item.substr(0, paren));
    int repeat = 1;
    if (paren != std::string::npos) {
      if (item.back() != ')') {
        throw UsageError(fmt::format("SLURM_TASKS_PER_NODE='{}' is malformed", tasks_per_node));
      }
      repeat = parse_int("SLURM_TASKS_PER_NODE", item.substr(paren + 2, item.size() - paren - 3));
    }
    if (node < seen + repeat) return tasks;
    seen += repeat;
    i = end + 1;
  }
  throw UsageError(
      fmt::format("SLURM_TASKS_PER_NODE='{}' has no entry for node {}", tasks_per_node, node));
}

RankInfo parse_env_contract(const EnvMap& env) {
  RankInfo info;
  if (lookup(env, "RANK") || lookup(env, "WORLD_SIZE")) {
    info = from_launcher(env);
  } else if (lookup(env, "SLURM_PROCID")) {
    info = from_slurm(env);
  } else if (lookup(env, "OMPI_COMM_WORLD_RANK")) {
    info = from_open_mpi(env);
  }

  if (info.world_size < 1) {
    throw UsageError(fmt::format("world size {} must be at least 1", info.world_size),
                     "check WORLD_SIZE (or SLURM_NTASKS / OMPI_COMM_WORLD_SIZE)");
  }
  check_range("RANK", info.rank, "WORLD_SIZE", info.world_size);
  if (info.local_world_size < 1 || info.local_world_size > info.world_size) {
    throw UsageError(fmt::format("LOCAL_WORLD_SIZE={} must be between 1 and WORLD_SIZE={}",
                                 info.local_world_size, info.world_size));
  }
  check_range("LOCAL_RANK", info.local_rank, "LOCAL_WORLD_SIZE", info.local_world_size);
  if (info.nnodes < 1) throw UsageError(fmt::format("NNODES={} must be at least 1", info.nnodes));
  check_range("NODE_RANK", info.node_rank, "NNODES", info.nnodes);

  if (auto addr = lookup(env, "MASTER_ADDR")) {
    info.master_addr = *addr;
  } else if (info.world_size > 1 && info.source == ContractSource::kLauncher) {
    throw UsageError(fmt::format("MASTER_ADDR is not set, but WORLD_SIZE={} needs the address "
                                 "of rank 0's store",
                                 info.world_size),
                     "set MASTER_ADDR and MASTER_PORT (dslaunch does), e.g. MASTER_ADDR=127.0.0.1");
  }
  if (auto port = lookup(env, "MASTER_PORT")) {
    info.master_port = parse_int("MASTER_PORT", *port);
    if (info.master_port < 1 || info.master_port > 65535) {
      throw UsageError(fmt::format("MASTER_PORT={} is not a TCP port", info.master_port),
                       "use a free port between 1024 and 65535");
    }
  }
  if (auto id = lookup(env, "DS_RUN_ID")) info.run_id = *id;
  if (info.run_id.empty()) info.run_id = "run";
  info.run_token = lookup(env, "DS_RUN_TOKEN").value_or("");

  info.rendezvous_timeout = seconds_var(env, "DS_RENDEZVOUS_TIMEOUT", info.rendezvous_timeout);
  info.collective_timeout = seconds_var(env, "DS_COLLECTIVE_TIMEOUT", info.collective_timeout);
  if (auto backend = lookup(env, "DS_COMM_BACKEND")) {
    info.backend = comm::parse_backend(*backend, "DS_COMM_BACKEND");
  }
  info.socket_ifname = lookup(env, "DS_SOCKET_IFNAME").value_or("");
  if (auto kb = lookup(env, "DS_SHM_CHUNK_KB")) {
    const int value = parse_int("DS_SHM_CHUNK_KB", *kb);
    if (value < 4 || value > 65536) {
      throw UsageError(fmt::format("DS_SHM_CHUNK_KB={} is outside 4..65536", value),
                       "the shared-memory step size in KiB; leave it unset for the default");
    }
    info.shm_chunk_bytes = static_cast<size_t>(value) * 1024;
  }
  return info;
}

}  // namespace ds::worker
