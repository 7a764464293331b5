// dslaunch: start one dsworker (or any program) per rank, locally or over SSH.
#include <CLI/CLI.hpp>

#include "launcher/launch_options.h"
#include "util/error.h"
#include "util/version.h"

int main(int argc, char** argv) {
  ds::launcher::LaunchOptions o;
  CLI::App app{"dslaunch: start one dsworker per rank on the hosts of a hostfile and supervise them",
               "dslaunch"};
  app.set_version_flag("--version", std::string("dslaunch ") + ds::kVersion);
  app.add_option("-H,--hostfile", o.hostfile, "Hostfile: lines of 'host slots=N'");
  app.add_option("-i,--include", o.include, "Hosts/slots to use, e.g. 'n1:0,1@n2'");
  app.add_option("-e,--exclude", o.exclude, "Hosts/slots to leave out, e.g. 'n1:2'");
  app.add_option("--num_nodes", o.num_nodes, "Use the first N nodes of the hostfile");
  app.add_option("--num_gpus,--num_procs", o.num_gpus, "Ranks per node");
  app.add_option("--node_rank", o.node_rank, "This node's rank when nodes start by hand");
  app.add_option("--master_addr", o.master_addr, "Address of rank 0 (default: the first host)");
  app.add_option("--master_port", o.master_port, "Port of rank 0's store")->capture_default_str();
  app.add_option("--env", o.env, "KEY=VALUE to set for every rank (repeatable)");
  app.add_option("--env-prefix", o.env_prefix, "Forward variables with this prefix (repeatable)");
  app.add_option("--log_dir", o.log_dir, "Write each rank's output to LOG_DIR/rank<N>.log");
  app.add_flag("--no_ssh", o.no_ssh, "Launch on this node only");
  app.add_option("command", o.command, "train.cfg, or -- a program and its arguments")
      ->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return ds::launcher::launch(o);
  } catch (const ds::Error& e) {
    return ds::report_error("dslaunch", e);
  }
}
