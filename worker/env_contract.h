// The process contract (DESIGN.md) read from the environment: who this rank is and where the
// run's store lives. dslaunch, torchrun and DeepSpeed set RANK/WORLD_SIZE/...; Slurm's srun
// sets SLURM_*; Open MPI's mpirun sets OMPI_COMM_WORLD_*; with none of them this is the only
// rank. Parsing is a pure function of a map so tests can feed it any environment.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "comm/process_group.h"

namespace ds::worker {

using EnvMap = std::map<std::string, std::string>;

// The calling process's environment.
EnvMap process_environment();

enum class ContractSource { kSingle, kLauncher, kSlurm, kOpenMpi };
std::string_view contract_source_name(ContractSource source);  // "single", "launcher", ...

struct RankInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  int node_rank = 0;
  int nnodes = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string run_id;
  std::string run_token;
  ContractSource source = ContractSource::kSingle;

  // Communication settings from DS_* variables.
  std::chrono::milliseconds rendezvous_timeout = std::chrono::seconds(300);
  std::chrono::milliseconds collective_timeout = std::chrono::seconds(300);
  comm::Backend backend = comm::Backend::kAuto;
  std::string socket_ifname;   // DS_SOCKET_IFNAME
  size_t shm_chunk_bytes = 0;  // DS_SHM_CHUNK_KB * 1024; 0: the backend's default
};

// Reads and validates the contract; throws UsageError (exit code 2) naming the variable that
// is missing, malformed or inconsistent.
RankInfo parse_env_contract(const EnvMap& env);

// "node[01-03,07],gpu5" -> "node01": the first host of a Slurm node list.
std::string first_slurm_host(const std::string& nodelist);
// Tasks on node `node` from SLURM_TASKS_PER_NODE, e.g. "4(x2),3" -> 4, 4, 3.
int slurm_tasks_on_node(const std::string& tasks_per_node, int node);

}  // namespace ds::worker
