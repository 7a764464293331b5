// What `dslaunch` was asked to do: DeepSpeed runner's flags, torchrun-compatible
// where they overlap. Parsed by apps/dslaunch, carried out by the launcher.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ds::launcher {

struct LaunchOptions {
  std::string hostfile;       // --hostfile (DeepSpeed's format: "host slots=N")
  std::string include;        // --include 'n1:0,1@n2'
  std::string exclude;        // --exclude
  int num_nodes = -1;         // --num_nodes: -1 every node of the hostfile
  int num_gpus = -1;          // --num_gpus (alias --num_procs): ranks per node
  int node_rank = -1;         // --node_rank when each node is started by hand
  std::string master_addr;    // --master_addr, default the first host
  int master_port = 29500;    // --master_port, DeepSpeed's default
  std::vector<std::string> env;         // --env KEY=VAL
  std::vector<std::string> env_prefix;  // --env-prefix NCCL_
  std::string log_dir;                  // --log_dir: per-rank log files
  bool no_ssh = false;                  // --no_ssh: this node only
  std::vector<std::string> command;     // train.cfg, or -- program args
};

// Checks what can be checked without touching hosts; throws UsageError.
void check_options(const LaunchOptions& options);

// Runs the job and returns the exit code (DESIGN.md's process contract).
int launch(const LaunchOptions& options);

}  // namespace ds::launcher
