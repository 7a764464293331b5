#include "bench/forked_ranks.h"

#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "util/error.h"

namespace ds::bench {
namespace {

std::atomic<int> g_interrupt{0};

void on_interrupt(int signal) { g_interrupt = signal; }

}  // namespace

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

ForkedRanks::ForkedRanks(int n, const std::function<int(int)>& child, bool capture_output) {
  std::fflush(stdout);
  std::fflush(stderr);
  for (int r = 0; r < n; ++r) {
    std::FILE* out = capture_output ? std::tmpfile() : nullptr;
    if (capture_output && out == nullptr) {
      kill_all(SIGKILL);
      throw Error("cannot create a temporary file for a rank's output");
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
      if (out) std::fclose(out);
      kill_all(SIGKILL);
      wait(std::chrono::seconds(5), false);
      throw Error(fmt::format("fork failed for rank {}", r));
    }
    if (pid == 0) {
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      if (out) {
        ::dup2(fileno(out), STDOUT_FILENO);
        ::dup2(fileno(out), STDERR_FILENO);
      }
      int code = 1;
      try {
        code = child(r);
      } catch (const Error& e) {
        std::fflush(stdout);
        fmt::print(stderr, "rank {}: error: {}\n", r, e.what());
        if (!e.hint().empty()) fmt::print(stderr, "  hint: {}\n", e.hint());
        code = static_cast<int>(e.code());
      } catch (const std::exception& e) {
        fmt::print(stderr, "rank {}: error: {}\n", r, e.what());
      }
      std::fflush(stdout);
      std::fflush(stderr);
      ::_exit(code);  // no atexit handlers or static destructors of the parent's state
    }
    pids_.push_back(pid);
    status_.push_back(-1);
    outputs_.push_back(out);
  }
}

ForkedRanks::~ForkedRanks() {
  kill_all(SIGKILL);
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (status_[i] < 0) ::waitpid(pids_[i], &status_[i], 0);
  }
  for (std::FILE* f : outputs_) {
    if (f) std::fclose(f);
  }
}

void ForkedRanks::kill(int rank, int signal) {
  const auto i = static_cast<size_t>(rank);
  if (status_.at(i) < 0) ::kill(pids_[i], signal);
}

void ForkedRanks::kill_all(int signal) {
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (status_[i] < 0) ::kill(pids_[i], signal);
  }
}

std::vector<RankExit> ForkedRanks::wait(std::chrono::milliseconds timeout, bool fail_fast) {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  struct sigaction old_int {};
  struct sigaction old_term {};
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);
  g_interrupt = 0;

  std::vector<RankExit> exits(pids_.size());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool killed = false;
  while (true) {
    size_t running = 0;
    for (size_t i = 0; i < pids_.size(); ++i) {
      if (status_[i] >= 0) continue;
      int status = 0;
      const pid_t done = ::waitpid(pids_[i], &status, WNOHANG);
      if (done == pids_[i]) {
        status_[i] = status;
        if (fail_fast && exit_code(status) != 0 && !killed) {
          kill_all(SIGKILL);
          killed = true;
        }
      } else {
        ++running;
      }
    }
    if (running == 0) break;
    if (g_interrupt != 0 && !killed) {
      interrupted_ = g_interrupt;
      kill_all(SIGKILL);
      killed = true;
    }
    if (std::chrono::steady_clock::now() >= deadline && !killed) {
      for (size_t i = 0; i < pids_.size(); ++i) exits[i].timed_out = status_[i] < 0;
      kill_all(SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);

  for (size_t i = 0; i < pids_.size(); ++i) {
    exits[i].code = exit_code(status_[i]);
    if (std::FILE* f = outputs_[i]) {
      std::rewind(f);
      char buffer[4096];
      size_t n;
      while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) exits[i].output.append(buffer, n);
    }
  }
  return exits;
}

}  // namespace ds::bench
