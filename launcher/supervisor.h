// The launcher's side of supervision: sends each node agent its plan, then
// relays output (prefixed, and to per-rank log files), watches exit statuses and
// heartbeats, and on the first failure — a rank ending badly, a node lost or
// silent, an agent error — or on SIGINT/SIGTERM/SIGHUP tells every agent to stop.
// Then it prints a summary and returns dslaunch's exit code:
//   0 every rank exited 0; the first failed rank's code (128+N for signal N);
//   1 a node was lost or its agent failed; 128+N when dslaunch got signal N.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "launcher/launch_options.h"
#include "launcher/rank_plan.h"
#include "launcher/runner.h"

namespace ds::launcher {

class SignalPipe;

struct SupervisorOptions {
  Prefix prefix = Prefix::kRank;
  std::string log_dir;       // empty: no log files
  int grace_ms = 3000;       // the agents' SIGTERM -> SIGKILL wait
  int heartbeat_ms = 30000;  // silence from a node this long = lost
  int tail_lines = 20;       // of the failed rank, in the summary
  std::FILE* out = stdout;   // ranks' stdout
  std::FILE* err = stderr;   // ranks' stderr and our own messages
};

struct AgentConnection {
  const NodePlan* node;
  std::unique_ptr<AgentLink> link;
};

// `signals` may be null (tests): then only failures end the run early.
int supervise(const Plan& plan, std::vector<AgentConnection> agents,
              const SupervisorOptions& options, SignalPipe* signals);

}  // namespace ds::launcher
