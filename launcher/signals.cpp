#include "launcher/signals.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include "util/error.h"

namespace ds::launcher {

namespace {

int g_write_fd = -1;
int g_read_fd = -1;

void on_signal(int sig) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(sig);
  if (g_write_fd >= 0) [[maybe_unused]]
    auto n = ::write(g_write_fd, &byte, 1);
  errno = saved;
}

}  // namespace

SignalPipe::SignalPipe(std::initializer_list<int> signals) : signals_(signals) {
  if (g_read_fd < 0) {
    int fds[2];
    DS_CHECK(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2 failed");
    g_read_fd = fds[0];
    g_write_fd = fds[1];
  }
  for (int sig : signals_) {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | (sig == SIGCHLD ? SA_NOCLDSTOP : 0);
    ::sigaction(sig, &sa, nullptr);
  }
}

SignalPipe::~SignalPipe() {
  for (int sig : signals_) ::signal(sig, SIG_DFL);
}

int SignalPipe::fd() const { return g_read_fd; }

std::vector<int> SignalPipe::drain() {
  std::vector<int> out;
  unsigned char buf[64];
  ssize_t n;
  while ((n = ::read(g_read_fd, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  return out;
}

void reset_signals_for_exec() {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  }
  sigset_t all;
  sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
}

}  // namespace ds::launcher
