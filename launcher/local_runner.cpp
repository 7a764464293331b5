#include "launcher/local_runner.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "launcher/host_info.h"
#include "launcher/io.h"
#include "launcher/preflight.h"
#include "util/error.h"

namespace ds::launcher {

namespace {

class LocalLink : public AgentLink {
 public:
  LocalLink(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  ~LocalLink() override {
    disconnect();
    // The agent exits right after DONE, or after its teardown once cut off;
    // if it is stuck, SIGKILL it — its keeper then clears its ranks.
    const int64_t deadline = now_ms() + 10000;
    int status;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (now_ms() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      ::usleep(20 * 1000);
    }
    ::close(fd_);
  }
  int fd() const override { return fd_; }
  void disconnect() override { ::shutdown(fd_, SHUT_RDWR); }

 private:
  pid_t pid_;
  int fd_;
};

}  // namespace

std::string run_shell(const std::string& script) {
  FILE* pipe = ::popen(("/bin/sh -c " + shell_quote(script) + " </dev/null").c_str(), "r");
  DS_CHECK(pipe != nullptr, "popen failed: {}", std::strerror(errno));
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

std::vector<NodeFacts> LocalRunner::preflight(const std::vector<const NodePlan*>& nodes,
                                              const std::vector<PreflightRequest>& requests) {
  std::vector<NodeFacts> out;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const std::string name = fmt::format("node {} ({})", nodes[i]->node_rank, nodes[i]->host.key());
    out.push_back(parse_preflight(run_shell(preflight_script(requests[i])), requests[i], name));
  }
  return out;
}

std::unique_ptr<AgentLink> LocalRunner::start(const NodePlan&, const NodeFacts&) {
  int sv[2];
  DS_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair failed: {}",
           std::strerror(errno));
  const std::string exe = self_exe();
  const char* argv[] = {"dslaunch", "--node-agent", nullptr};
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  DS_CHECK(pid >= 0, "fork failed: {}", std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    ::dup2(sv[1], 0);
    ::dup2(sv[1], 1);
    ::syscall(SYS_close_range, 3, ~0U, 0);
    ::execv(exe.c_str(), const_cast<char**>(argv));
    ::_exit(127);
  }
  ::close(sv[1]);
  return std::make_unique<LocalLink>(pid, sv[0]);
}

}  // namespace ds::launcher
