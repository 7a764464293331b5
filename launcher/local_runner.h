// Nodes on this host: the agent is this same binary, forked and exec'd as
// `dslaunch --node-agent`, its stdin and stdout one end of a socketpair. Exactly
// the agent code remote nodes run; its input ends (and PR_SET_PDEATHSIG fires) if
// the launcher dies.
#pragma once

#include "launcher/runner.h"

namespace ds::launcher {

class LocalRunner : public Runner {
 public:
  std::vector<NodeFacts> preflight(const std::vector<const NodePlan*>& nodes,
                                   const std::vector<PreflightRequest>& requests) override;
  std::unique_ptr<AgentLink> start(const NodePlan& node, const NodeFacts& facts) override;
};

// Runs `sh -c script` here; returns its stdout.
std::string run_shell(const std::string& script);

}  // namespace ds::launcher
