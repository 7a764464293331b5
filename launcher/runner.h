// How the launcher reaches node agents. One interface, several backends (like
// ninja's CommandRunner): LocalRunner forks the agent on this host, SshRunner runs
// it over libssh, and tests plug in fakes. The supervisor only ever sees an
// AgentLink: a file descriptor that speaks protocol.h.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "launcher/rank_plan.h"

namespace ds::launcher {

class AgentLink {
 public:
  virtual ~AgentLink() = default;
  // Bidirectional: PLAN/STOP/PING are written here, the agent's messages read.
  virtual int fd() const = 0;
  // Cuts the agent off without waiting. It notices its input ending and stops
  // its ranks by itself.
  virtual void disconnect() = 0;
};

// What the launcher needs to know about a node before starting anything.
struct PreflightRequest {
  std::string workdir;
  std::vector<std::string> launcher_candidates;  // dslaunch on the node; first found wins
  std::vector<std::string> program_candidates;   // what the ranks run; first found wins
  std::string required_file;                     // train.cfg (from workdir), if any
  bool want_address = false;                     // this node hosts MASTER_ADDR/PORT
};

struct NodeFacts {
  std::vector<std::string> problems;  // empty: ready to launch
  std::string launcher;               // the launcher candidate found
  std::string program;                // the program candidate found
  std::string address;                // this node's address, as it sees itself
  int free_port = 0;
};

class Runner {
 public:
  virtual ~Runner() = default;
  // Checks every node at once (in parallel where it talks to the network) and
  // reports everything wrong, so one attempt shows all problems.
  virtual std::vector<NodeFacts> preflight(const std::vector<const NodePlan*>& nodes,
                                           const std::vector<PreflightRequest>& requests) = 0;
  // Starts the agent on `node`; `facts` is what preflight found there.
  virtual std::unique_ptr<AgentLink> start(const NodePlan& node, const NodeFacts& facts) = 0;
};

}  // namespace ds::launcher
