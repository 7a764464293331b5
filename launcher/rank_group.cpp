#include "launcher/rank_group.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

#include "launcher/signals.h"
#include "util/error.h"

namespace ds::launcher {

namespace {

void close_from(int first) { ::syscall(SYS_close_range, first, ~0U, 0); }

void sleep_ms(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

[[noreturn]] void run_keeper(int pipe_fd, int grace_ms) {
  ::prctl(PR_SET_NAME, "dslaunch-keeper");
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  const int null = ::open("/dev/null", O_RDWR);
  ::dup2(null, 0);
  ::dup2(null, 1);
  ::dup2(null, 2);
  ::dup2(pipe_fd, 3);
  close_from(4);
  char c;
  ssize_t n;
  while ((n = ::read(3, &c, 1)) < 0 && errno == EINTR) {
  }
  if (n > 0) ::_exit(0);  // the agent said goodbye: nothing to do
  // EOF: the agent is gone without tearing down. Do it for it.
  ::kill(0, SIGTERM);
  sleep_ms(grace_ms);
  ::kill(0, SIGKILL);  // ends the keeper too
  ::_exit(0);
}

}  // namespace

RankGroup::RankGroup(int grace_ms) {
  int fds[2];
  DS_CHECK(::pipe2(fds, O_CLOEXEC) == 0, "pipe2 failed: {}", std::strerror(errno));
  const pid_t pid = ::fork();
  DS_CHECK(pid >= 0, "fork failed: {}", std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::close(fds[1]);
    run_keeper(fds[0], grace_ms);
  }
  ::setpgid(pid, pid);  // also here: whichever runs first, the group exists before any rank
  ::close(fds[0]);
  keeper_ = pid;
  keeper_pipe_ = fds[1];
}

RankGroup::~RankGroup() { kill_all(); }

RankProcess RankGroup::spawn(const std::vector<std::string>& argv,
                             const std::vector<std::string>& env) {
  int out[2], err[2];
  DS_CHECK(::pipe2(out, O_CLOEXEC) == 0 && ::pipe2(err, O_CLOEXEC) == 0, "pipe2 failed: {}",
           std::strerror(errno));
  // Everything the child needs is built before fork.
  std::vector<char*> cargv, cenv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const std::string& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pgid = keeper_;

  const pid_t pid = ::fork();
  DS_CHECK(pid >= 0, "fork failed: {}", std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, pgid);
    // If the agent dies, so do we — and if it died before this line, go now.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(128 + SIGTERM);
    reset_signals_for_exec();
    const int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    close_from(3);
    environ = cenv.data();  // execvp searches the rank's own PATH
    ::execvp(cargv[0], cargv.data());
    const int e = errno;
    const std::string msg =
        fmt::format("dslaunch: cannot run '{}': {}\n", argv[0], std::strerror(e));
    [[maybe_unused]] auto n = ::write(2, msg.data(), msg.size());
    ::_exit(e == ENOENT ? 127 : 126);
  }
  ::setpgid(pid, pgid);  // may fail with EACCES once the child has exec'd: it already did it
  ::close(out[1]);
  ::close(err[1]);
  return {pid, out[0], err[0]};
}

void RankGroup::signal(int sig) {
  if (keeper_ > 0) ::kill(-keeper_, sig);
}

bool RankGroup::has_members() const {
  if (keeper_ <= 0) return false;
  DIR* dir = ::opendir("/proc");
  if (!dir) return true;  // can't tell: assume so, the caller then waits out the grace
  bool found = false;
  while (dirent* d = ::readdir(dir)) {
    const pid_t pid = std::atoi(d->d_name);
    if (pid <= 0 || pid == keeper_) continue;
    std::ifstream stat(std::string("/proc/") + d->d_name + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), {});
    // Fields after "(comm)": state ppid pgrp ...; comm may hold spaces, so split after ')'.
    const size_t close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 1));
    std::string state;
    long ppid = 0, pgrp = 0;
    rest >> state >> ppid >> pgrp;
    if (pgrp == keeper_ && state != "Z") {
      found = true;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

void RankGroup::kill_all() {
  if (keeper_ <= 0) return;
  ::kill(-keeper_, SIGKILL);
  int status;
  while (::waitpid(keeper_, &status, 0) < 0 && errno == EINTR) {
  }
  ::close(keeper_pipe_);
  keeper_ = -1;
  keeper_pipe_ = -1;
}

}  // namespace ds::launcher
