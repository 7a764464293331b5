// Runs N ranks as forked child processes of this one: `dsbench comm --np N` and the
// multi-process tests. Children are always reaped: a failure (or Ctrl-C) kills the rest, a
// deadline kills stragglers, and the destructor SIGKILLs anything still running.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace ds::bench {

struct RankExit {
  int code = -1;           // exit code, or 128 + signal
  bool timed_out = false;  // killed at the deadline
  std::string output;      // stdout and stderr, when captured
};

class ForkedRanks {
 public:
  // Forks `n` children at once; child r runs `child(r)` and exits with what it returns (an
  // exception prints "rank r: error: ..." and exits 1). Call before starting any threads.
  ForkedRanks(int n, const std::function<int(int rank)>& child, bool capture_output);
  ~ForkedRanks();
  ForkedRanks(const ForkedRanks&) = delete;
  ForkedRanks& operator=(const ForkedRanks&) = delete;

  // Reaps every child. With `fail_fast`, the first failure SIGKILLs the others; past
  // `timeout` the stragglers are SIGKILLed and marked timed_out. SIGINT or SIGTERM to this
  // process kills them all too (and the exit codes say so).
  std::vector<RankExit> wait(std::chrono::milliseconds timeout, bool fail_fast);

  void kill(int rank, int signal);
  // The signal (SIGINT, SIGTERM) that interrupted the last wait(), or 0.
  int interrupted() const { return interrupted_; }
  pid_t pid(int rank) const { return pids_.at(static_cast<size_t>(rank)); }
  int size() const { return static_cast<int>(pids_.size()); }

 private:
  void kill_all(int signal);

  std::vector<pid_t> pids_;
  std::vector<int> status_;  // -1 while running
  std::vector<std::FILE*> outputs_;
  int interrupted_ = 0;
};

// Exit code of a child: its status, or 128 + the signal that killed it.
int exit_code(int wait_status);

}  // namespace ds::bench
