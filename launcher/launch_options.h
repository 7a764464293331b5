// What `dslaunch` was asked to do: DeepSpeed runner's flags, torchrun-compatible
// where they overlap. Parsed by apps/dslaunch, carried out by launch().
#pragma once

#include <string>
#include <vector>

namespace ds::launcher {

enum class Prefix { kNone, kRank, kHost };

struct LaunchOptions {
  // What runs: `config` (train.cfg for dsworker) or `program` (after `--`).
  std::string config;
  std::vector<std::string> config_args;  // extra arguments after train.cfg, for dsworker
  std::vector<std::string> program;      // -- CMD ARGS

  // Where: DeepSpeed's resource flags.
  std::string hostfile;          // --hostfile: "host slots=N" lines; empty: this host only
  std::string include;           // --include 'n1:0,1@n2'
  std::string exclude;           // --exclude
  int num_nodes = -1;            // --num_nodes: the first N nodes
  int num_gpus = -1;             // --num_gpus (--num_procs, --nproc_per_node): ranks per node
  int node_rank = -1;            // --node_rank with --no_ssh: which node this invocation starts
  bool no_ssh = false;           // --no_ssh: start only this node's ranks (nodes started by hand)
  std::string launcher = "ssh";  // --launcher ssh|slurm ("ssh" also covers the local case)

  std::string master_addr;  // --master_addr; default: the first host's address
  int master_port = -1;     // --master_port; default: a free port on the first host
  std::string run_id;       // --run_id; default: time + random

  // Environment for the ranks (forwarded to remote nodes explicitly).
  std::vector<std::string> env;         // --env KEY=VAL
  std::vector<std::string> env_prefix;  // --env-prefix NCCL_

  // Paths on the nodes.
  std::string workdir;        // --workdir; default: the current directory
  std::string worker_path;    // --worker_path; default: dsworker beside dslaunch, else PATH
  std::string launcher_path;  // --launcher_path; default: this dslaunch's path, else PATH

  // SSH.
  int ssh_port = -1;         // --ssh_port, for hosts the hostfile gives no port
  std::string ssh_identity;  // --ssh_identity: private key file
  std::string ssh_config;    // --ssh_config; default ~/.ssh/config
  std::string
      ssh_known_hosts;  // --ssh_known_hosts; default from ssh_config, else ~/.ssh/known_hosts
  bool ssh_accept_new = false;  // --ssh_accept_new: trust (and record) unknown host keys
  int ssh_timeout = 10;         // --ssh_timeout: seconds to connect

  // Supervision.
  Prefix prefix = Prefix::kRank;    // --prefix none|rank|host
  std::string log_dir;              // --log_dir: LOG_DIR/rank<N>.log
  double kill_grace = 3.0;          // --kill_grace: seconds between SIGTERM and SIGKILL
  double heartbeat_timeout = 30.0;  // --heartbeat_timeout: seconds of silence = node lost
  int tail_lines = 20;              // lines of a failed rank's output in the summary
  bool dry_run = false;             // --dry-run: print the plan, start nothing
};

// Checks what can be checked without touching files or hosts; throws UsageError.
void check_options(const LaunchOptions& options);

// Runs the job and returns dslaunch's exit code (docs/launcher.md).
int launch(const LaunchOptions& options);

}  // namespace ds::launcher
