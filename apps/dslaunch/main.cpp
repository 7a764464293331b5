// dslaunch: start one dsworker (or any program) per rank, locally or over SSH,
// and supervise them. Only parses the command line; launcher/ does the work.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>

#include "launcher/host_info.h"
#include "launcher/launch_options.h"
#include "launcher/node_agent.h"
#include "util/error.h"
#include "util/version.h"

int main(int argc, char** argv) {
  namespace dl = ds::launcher;
  dl::LaunchOptions o;
  // Everything after the first "--" is the program, untouched by option parsing.
  int split = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      split = i;
      break;
    }
  }
  for (int i = split + 1; i < argc; ++i) o.program.emplace_back(argv[i]);

  CLI::App app{
      "dslaunch: start one dsworker (or, after --, any program) per rank on this host "
      "or on the hosts of a hostfile, and supervise them",
      "dslaunch"};
  app.footer(
      "Usage: dslaunch [OPTIONS] train.cfg [dsworker args]\n"
      "       dslaunch [OPTIONS] -- CMD [ARGS...]\n"
      "Exit code: 0 all ranks succeeded; the first failed rank's code (128+N for signal "
      "N); 1 a node was lost; 2 a usage, hostfile or preflight error; 130/143/129 "
      "interrupted. See docs/launcher.md.");
  app.set_version_flag("--version", std::string("dslaunch ") + ds::kVersion);
  app.prefix_command();  // train.cfg and whatever follows it belong to dsworker
  std::string prefix = "rank";
  bool node_agent = false, print_free_port = false;

  app.add_option("-H,--hostfile", o.hostfile, "Hostfile: 'host slots=N' lines (DeepSpeed's)");
  app.add_option("-i,--include", o.include, "Only these hosts/slots, e.g. 'n1:0,1@n2'");
  app.add_option("-e,--exclude", o.exclude, "All but these hosts/slots, e.g. 'n1:2@n3'");
  app.add_option("--num_nodes", o.num_nodes, "Use the first N nodes of the hostfile");
  app.add_option("--num_gpus,--num_procs,--nproc_per_node", o.num_gpus,
                 "Ranks per node (without GPUs: processes on this host)");
  app.add_option("--master_addr", o.master_addr,
                 "Address of rank 0 (default: the first host's address)");
  app.add_option("--master_port", o.master_port, "Port of rank 0's store (default: a free one)");
  app.add_option("--run_id", o.run_id, "DS_RUN_ID (default: time and a random suffix)");
  app.add_option("--env", o.env, "KEY=VALUE for every rank (repeatable)");
  app.add_option("--env-prefix,--env_prefix", o.env_prefix,
                 "Forward this host's variables with this prefix (repeatable)");
  app.add_option("--workdir", o.workdir, "Directory the ranks start in (default: this one)");
  app.add_option("--worker_path", o.worker_path,
                 "dsworker on the nodes (default: beside dslaunch, else PATH)");
  app.add_option("--launcher_path", o.launcher_path,
                 "dslaunch on remote nodes (default: this path, else PATH)");
  app.add_option("--launcher", o.launcher, "ssh (default; also local) or slurm");
  app.add_flag("--no_ssh", o.no_ssh, "Start only this node's ranks (every node by hand)");
  app.add_option("--node_rank", o.node_rank, "This node's rank, with --no_ssh");
  app.add_option("--ssh_port", o.ssh_port, "SSH port for hosts without host:port");
  app.add_option("--ssh_identity", o.ssh_identity, "SSH private key to try first");
  app.add_option("--ssh_config", o.ssh_config, "SSH config file (default ~/.ssh/config)");
  app.add_option("--ssh_known_hosts", o.ssh_known_hosts,
                 "known_hosts file (default: from the ssh config, else ~/.ssh/known_hosts)");
  app.add_flag("--ssh_accept_new", o.ssh_accept_new, "Trust and record unknown host keys");
  app.add_option("--ssh_timeout", o.ssh_timeout, "Seconds to connect")->capture_default_str();
  app.add_option("--prefix", prefix, "Output prefix: none, rank or host")
      ->check(CLI::IsMember({"none", "rank", "host"}))
      ->capture_default_str();
  app.add_option("--log_dir", o.log_dir, "Also write each rank's output to LOG_DIR/rank<N>.log");
  app.add_option("--kill_grace", o.kill_grace, "Seconds between SIGTERM and SIGKILL")
      ->capture_default_str();
  app.add_option("--heartbeat_timeout", o.heartbeat_timeout,
                 "Seconds of silence after which a node counts as lost")
      ->capture_default_str();
  app.add_flag("--dry-run,--dry_run", o.dry_run, "Print every rank's command and environment");
  app.add_flag("--node-agent", node_agent, "(internal) run as a node's agent on stdin/stdout")
      ->group("");
  app.add_flag("--free-port", print_free_port, "(internal) print a free TCP port")->group("");
  try {
    app.parse(split, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (node_agent) return dl::run_node_agent(0, 1);
  try {
    if (print_free_port) {
      std::printf("%d\n", dl::free_port());
      return 0;
    }
    const std::vector<std::string> rest = app.remaining();
    if (!rest.empty()) {
      if (!o.program.empty()) {
        throw ds::UsageError(
            fmt::format("give a train.cfg or a program after --, not both ('{}')", rest.front()));
      }
      o.config = rest.front();
      o.config_args.assign(rest.begin() + 1, rest.end());
    }
    o.prefix = prefix == "none"   ? dl::Prefix::kNone
               : prefix == "host" ? dl::Prefix::kHost
                                  : dl::Prefix::kRank;
    return dl::launch(o);
  } catch (const ds::Error& e) {
    return ds::report_error("dslaunch", e);
  } catch (const std::exception& e) {  // e.g. a --log_dir that can't be created
    return ds::report_error("dslaunch", ds::Error(e.what()));
  }
}
