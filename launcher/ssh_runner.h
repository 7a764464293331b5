// Remote nodes over libssh: one session per node, every node connected and
// checked in parallel, then `dslaunch --node-agent` on one exec channel per node.
// A pump thread per node owns its session from then on and copies bytes between
// the channel and a socketpair whose other end is the supervisor's AgentLink —
// so the supervisor polls plain file descriptors, local or remote alike. The
// agent's stderr (its own complaints, never rank output) goes to our stderr.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "launcher/runner.h"
#include "launcher/ssh_session.h"

namespace ds::launcher {

class SshRunner : public Runner {
 public:
  explicit SshRunner(SshSettings settings, std::string run_id)
      : settings_(std::move(settings)), run_id_(std::move(run_id)) {}
  ~SshRunner() override;

  std::vector<NodeFacts> preflight(const std::vector<const NodePlan*>& nodes,
                                   const std::vector<PreflightRequest>& requests) override;
  std::unique_ptr<AgentLink> start(const NodePlan& node, const NodeFacts& facts) override;

 private:
  SshSettings settings_;
  std::string run_id_;
  std::mutex mutex_;
  std::map<int, std::unique_ptr<SshSession>> sessions_;  // by node rank, after preflight
};

}  // namespace ds::launcher
