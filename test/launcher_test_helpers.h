// Running dslaunch in the background from tests: start it, signal it, wait for it
// with a deadline, and check the processes of a run by the pids its ranks wrote
// (never by name).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process_helpers.h"

namespace ds::testing {

// True while `pid` exists and is not a zombie.
inline bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  const size_t close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z';
}

// Polls `done` until it holds or `seconds` pass; returns whether it held.
inline bool wait_until(const std::function<bool()>& done, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// The pids found in DIR/pid.* files (each holding one number).
inline std::vector<pid_t> read_pids(const std::filesystem::path& dir) {
  std::vector<pid_t> pids;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("pid.", 0) != 0) continue;
    std::ifstream in(e.path());
    pid_t pid = 0;
    if (in >> pid && pid > 0) pids.push_back(pid);
  }
  return pids;
}

inline bool none_alive(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) {
    if (alive(p)) return false;
  }
  return true;
}

// dslaunch (or any command) running in the background, output to a file.
class Background {
 public:
  Background(const std::string& command, const std::filesystem::path& output) : output_(output) {
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      const int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), nullptr);
      ::_exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0 && code_ < 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  void signal(int sig) { ::kill(pid_, sig); }
  // The exit code (128+N for signal N), or -1 if still running after `seconds`.
  int wait(double seconds) {
    wait_until([&] { return poll(); }, seconds);
    return code_;
  }
  std::string output() const { return read_file(output_); }

 private:
  bool poll() {
    if (code_ >= 0) return true;
    int status;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
  }
  pid_t pid_ = -1;
  int code_ = -1;
  std::filesystem::path output_;
};

// A rank command that writes its pid to <dir>/pid.<RANK> and sleeps; a stubborn one ignores
// SIGTERM, so that only SIGKILL ends it.
inline std::string sleeper(const TempDir& dir, bool stubborn = false) {
  return "-- sh -c '" + std::string(stubborn ? "trap \"\" TERM; " : "") + "echo $$ > " +
         dir.file("pid.") + "$RANK; exec sleep 60'";
}

// KEY=VALUE lines (the output of `env`) as a map.
inline std::map<std::string, std::string> parse_env(const std::string& text) {
  std::map<std::string, std::string> env;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

}  // namespace ds::testing
