// The process group that holds one node's ranks, and the only way they are ever
// signalled: by that group's id, never by name.
//
// The group's leader is a tiny "keeper" process forked first. Because it lives
// until the very end, the group id can never be recycled while we might still
// signal it. The keeper also guards against the agent's own death: it holds the
// read end of a pipe whose write end only the agent has, so when the agent dies
// for any reason (even SIGKILL) the keeper sees EOF and tears the group down —
// SIGTERM, the grace period, SIGKILL. Ranks additionally get PR_SET_PDEATHSIG.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace ds::launcher {

struct RankProcess {
  pid_t pid = -1;
  int out_fd = -1;  // read ends of the rank's stdout and stderr
  int err_fd = -1;
};

class RankGroup {
 public:
  // Forks the keeper. `grace_ms` is what it waits between SIGTERM and SIGKILL.
  explicit RankGroup(int grace_ms);
  ~RankGroup();  // SIGKILLs whatever is left, keeper included
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  pid_t pgid() const { return keeper_; }
  pid_t keeper() const { return keeper_; }

  // Forks and execs `argv` (PATH searched with the rank's own PATH) with exactly
  // `env`, in the group, stdin from /dev/null. A failed exec prints why on the
  // rank's stderr and exits 127. Throws ds::Error if fork fails.
  RankProcess spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env);

  void signal(int sig);  // to every process of the group (the keeper ignores SIGTERM)
  // True while a process other than the keeper is in the group.
  bool has_members() const;
  // Final teardown: SIGKILL to the group (keeper included) and reap the keeper.
  void kill_all();

 private:
  pid_t keeper_ = -1;
  int keeper_pipe_ = -1;  // write end; closing it (or dying) sets the keeper off
};

}  // namespace ds::launcher
