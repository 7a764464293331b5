#include "launcher/slurm.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "launcher/signals.h"
#include "util/error.h"

namespace ds::launcher {

SrunCommand srun_command(const Plan& plan, bool from_hostfile) {
  const int per_node = plan.nodes.front().size();
  std::string nodelist;
  for (const NodePlan& n : plan.nodes) {
    if (n.size() != per_node) {
      throw UsageError("--launcher slurm needs the same number of ranks on every node",
                       "use --num_gpus, or give every host the same slots");
    }
    for (int s = 0; s < n.size(); ++s) {
      if (n.slots[s] != s) {
        throw UsageError("--launcher slurm can't pin GPU slots: Slurm assigns devices itself",
                         "leave out --include/--exclude slot lists with --launcher slurm");
      }
    }
    nodelist += (nodelist.empty() ? "" : ",") + n.host.host;
  }
  SrunCommand c;
  c.argv = {"srun",
            fmt::format("--nodes={}", plan.nodes.size()),
            fmt::format("--ntasks={}", plan.world_size),
            fmt::format("--ntasks-per-node={}", per_node),
            "--kill-on-bad-exit=1",
            "--chdir=" + plan.workdir};
  if (from_hostfile) c.argv.push_back("--nodelist=" + nodelist);
  c.argv.insert(c.argv.end(), plan.argv.begin(), plan.argv.end());
  c.env = plan.forwarded;
  if (!plan.master_addr.empty()) c.env.set("MASTER_ADDR", plan.master_addr);
  c.env.set("MASTER_PORT", std::to_string(plan.master_port));
  c.env.set("DS_RUN_ID", plan.run_id);
  c.env.set("DS_RUN_TOKEN", plan.run_token);
  return c;
}

std::string srun_line(const SrunCommand& command) {
  std::vector<std::string> words = {"env"};
  for (const auto& [k, v] : command.env.items()) {
    words.push_back(k + "=" + (k == "DS_RUN_TOKEN" ? "<secret>" : v));
  }
  words.insert(words.end(), command.argv.begin(), command.argv.end());
  return shell_join(words);
}

int run_srun(const SrunCommand& command, SignalPipe& signals) {
  std::vector<std::string> argv = command.argv;
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (const auto& [k, v] : command.env.items()) ::setenv(k.c_str(), v.c_str(), 1);
  int err_pipe[2];
  DS_CHECK(::pipe2(err_pipe, O_CLOEXEC) == 0, "pipe2 failed");
  const pid_t pid = ::fork();
  DS_CHECK(pid >= 0, "fork failed: {}", std::strerror(errno));
  if (pid == 0) {
    reset_signals_for_exec();
    ::execvp("srun", cargv.data());
    const int e = errno;
    [[maybe_unused]] auto n = ::write(err_pipe[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(err_pipe[1]);
  int exec_errno = 0;
  const bool exec_failed = ::read(err_pipe[0], &exec_errno, sizeof exec_errno) > 0;
  ::close(err_pipe[0]);
  int status = 0;
  if (exec_failed) {
    ::waitpid(pid, &status, 0);
    throw UsageError(fmt::format("cannot run srun: {}", std::strerror(exec_errno)),
                     "--launcher slurm works inside a Slurm allocation (salloc/sbatch), where "
                     "srun is on PATH");
  }
  while (true) {
    pollfd p{signals.fd(), POLLIN, 0};
    ::poll(&p, 1, 200);
    for (int sig : signals.drain()) ::kill(pid, sig);  // srun cancels the step on SIGINT
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace ds::launcher
