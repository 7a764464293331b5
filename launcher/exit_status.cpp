#include "launcher/exit_status.h"

#include <csignal>
#include <cstring>

#include "util/error.h"

namespace ds::launcher {

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : fmt::format("signal {}", sig);
}

std::string describe_exit(int code, int sig) {
  if (sig > 0) return fmt::format("was killed by {} (exit code {})", signal_name(sig), code);
  return fmt::format("exited with code {}", code);
}

std::string exit_hint(int code, int sig) {
  switch (sig) {
    case SIGKILL:
      return "SIGKILL often means the node ran out of memory (look for the OOM killer in "
             "`dmesg` or `journalctl -k` on that host), or that a scheduler or a person killed it";
    case SIGSEGV:
      return "a crash (segmentation fault): run that rank alone under gdb, or look for a core file";
    case SIGABRT:
      return "an abort: a failed assertion or an uncaught exception (see its last lines)";
    case SIGBUS:
      return "often a full /dev/shm or a file that shrank while mapped";
    case SIGTERM:
      return "something outside the run sent SIGTERM (a job scheduler's time limit?)";
    case 0:
      break;
    default:
      return "";
  }
  if (code == 127)
    return "the program was not found on that node: check --worker_path or PATH there";
  if (code == 126) return "the program is not executable on that node";
  if (code == 2) return "exit code 2 means a usage or config error: see its last lines";
  return "";
}

}  // namespace ds::launcher
