#include "launcher/node_agent.h"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>
#include <memory>

#include "launcher/env.h"
#include "launcher/host_info.h"
#include "launcher/io.h"
#include "launcher/protocol.h"
#include "launcher/rank_group.h"
#include "launcher/signals.h"
#include "util/error.h"

namespace ds::launcher {

namespace {

constexpr int kPingEveryMs = 2000;
constexpr int kPlanTimeoutMs = 60000;

struct Rank {
  int rank = 0;
  pid_t pid = -1;
  int fds[2] = {-1, -1};  // stdout, stderr
  LineBuffer lines[2];
  bool exited = false;
};

class NodeAgent {
 public:
  NodeAgent(int in_fd, int out_fd) : in_(in_fd), out_(out_fd), reader_(false) {}

  int run() {
    send({std::string(kHello), {}});
    if (!receive_plan()) return 1;
    try {
      start_ranks();
    } catch (const Error& e) {
      send({"ERROR", {e.what()}});
      stop();
    }
    loop();
    finish();
    return 0;
  }

 private:
  bool send(const Message& m) {
    if (link_lost_) return false;
    if (!write_all(out_, encode(m))) link_lost_ = true;
    return !link_lost_;
  }

  // Reads input; false when it ended.
  bool read_input() {
    char buf[65536];
    const ssize_t n = ::read(in_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return false;
    reader_.feed(std::string_view(buf, static_cast<size_t>(n)));
    last_heard_ = now_ms();
    return true;
  }

  bool receive_plan() {
    const int64_t deadline = now_ms() + kPlanTimeoutMs;
    while (now_ms() < deadline) {
      pollfd p{in_, POLLIN, 0};
      if (::poll(&p, 1, 1000) < 0 && errno != EINTR) return false;
      if (!signals_.drain().empty()) return false;
      if (p.revents && !read_input()) return false;
      while (auto m = reader_.next()) {
        if (m->type == "PLAN") {
          plan_ = parse_plan(*m);
          return true;
        }
      }
    }
    return false;
  }

  std::vector<std::string> rank_environment(const AgentRank& r) {
    EnvList env;
    for (const std::string& kv : current_environ()) {
      const size_t eq = kv.find('=');
      if (eq != std::string::npos) env.set(kv.substr(0, eq), kv.substr(eq + 1));
    }
    env.merge(r.env);
    if (!plan_.devices.empty() && gpu_count() > 0) env.set("CUDA_VISIBLE_DEVICES", plan_.devices);
    if (!env.find("OMP_NUM_THREADS")) {
      const int n = std::max<int>(1, cpu_count() / std::max<size_t>(1, plan_.ranks.size()));
      env.set("OMP_NUM_THREADS", std::to_string(n));
    }
    std::vector<std::string> out;
    for (const auto& [k, v] : env.items()) out.push_back(k + "=" + v);
    return out;
  }

  void start_ranks() {
    if (!plan_.workdir.empty() && ::chdir(plan_.workdir.c_str()) != 0) {
      throw Error(fmt::format("node {} ({}): cannot enter workdir {}: {}", plan_.node_rank,
                              plan_.host, plan_.workdir, std::strerror(errno)));
    }
    group_ = std::make_unique<RankGroup>(plan_.grace_ms);
    for (const AgentRank& r : plan_.ranks) {
      const RankProcess p = group_->spawn(plan_.argv, rank_environment(r));
      auto rank = std::make_unique<Rank>();
      rank->rank = r.rank;
      rank->pid = p.pid;
      rank->fds[0] = p.out_fd;
      rank->fds[1] = p.err_fd;
      set_nonblocking(p.out_fd);
      set_nonblocking(p.err_fd);
      send({"STARTED", {std::to_string(r.rank), std::to_string(p.pid)}});
      ranks_.push_back(std::move(rank));
    }
  }

  // Relays what a rank wrote; at EOF (or `final`) also its unfinished last line.
  void read_output(Rank& r, int stream, bool final = false) {
    int& fd = r.fds[stream];
    if (fd < 0) return;
    char buf[65536];
    bool eof = false;
    while (true) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        r.lines[stream].feed(std::string_view(buf, static_cast<size_t>(n)));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      eof = n == 0;
      break;  // EAGAIN: nothing more for now
    }
    std::string line;
    while (r.lines[stream].next(line)) send_line(r, stream, line);
    if ((eof || final) && r.lines[stream].flush(line)) send_line(r, stream, line);
    if (eof) {
      ::close(fd);
      fd = -1;
    }
  }

  void send_line(const Rank& r, int stream, const std::string& line) {
    send({"OUT", {std::to_string(r.rank), std::to_string(stream + 1), line}});
  }

  void reap() {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      for (auto& r : ranks_) {
        if (r->pid != pid) continue;
        r->exited = true;
        // What the rank wrote before it ended comes before its exit status, so the
        // launcher's "last lines" are really the last ones.
        read_output(*r, 0, true);
        read_output(*r, 1, true);
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        send({"EXIT", {std::to_string(r->rank), std::to_string(code), std::to_string(sig)}});
      }
    }
  }

  // SIGTERM now; SIGKILL when the grace period is over (in loop()).
  void stop() {
    if (stopping_) return;
    stopping_ = true;
    kill_at_ = now_ms() + plan_.grace_ms;
    if (group_) group_->signal(SIGTERM);
  }

  bool all_exited() const {
    return std::all_of(ranks_.begin(), ranks_.end(), [](const auto& r) { return r->exited; });
  }

  void loop() {
    int64_t next_ping = now_ms() + kPingEveryMs;
    last_heard_ = now_ms();
    while (!all_exited()) {
      std::vector<pollfd> fds;
      fds.push_back({signals_.fd(), POLLIN, 0});
      if (!input_closed_) fds.push_back({in_, POLLIN, 0});
      std::vector<std::pair<Rank*, int>> owners;
      for (auto& r : ranks_) {
        for (int s = 0; s < 2; ++s) {
          if (r->fds[s] < 0) continue;
          fds.push_back({r->fds[s], POLLIN, 0});
          owners.emplace_back(r.get(), s);
        }
      }
      ::poll(fds.data(), fds.size(), 200);
      const int64_t now = now_ms();
      for (int sig : signals_.drain()) {
        if (sig == SIGCHLD) {
          reap();
        } else {
          stop();  // SIGTERM, SIGINT or SIGHUP: the launcher (or a human) wants us gone
        }
      }
      const size_t first_rank_fd = input_closed_ ? 1 : 2;
      if (!input_closed_ && fds[1].revents) {
        if (!read_input()) {
          input_closed_ = true;  // the launcher is gone: nobody would hear us anyway
          link_lost_ = true;
          stop();
        }
        handle_messages();
      }
      for (size_t i = first_rank_fd; i < fds.size(); ++i) {
        if (fds[i].revents)
          read_output(*owners[i - first_rank_fd].first, owners[i - first_rank_fd].second);
      }
      if (!input_closed_ && now - last_heard_ > plan_.heartbeat_ms) {
        ::fprintf(stderr, "dslaunch node agent %d: no word from the launcher for %d ms; stopping\n",
                  plan_.node_rank, plan_.heartbeat_ms);
        link_lost_ = true;
        stop();
      }
      if (now >= next_ping) {
        send({"PING", {}});
        next_ping = now + kPingEveryMs;
      }
      if (link_lost_) stop();
      if (stopping_ && now >= kill_at_ && group_) group_->signal(SIGKILL);
    }
  }

  void handle_messages() {
    try {
      while (auto m = reader_.next()) {
        if (m->type == "STOP") stop();
      }
    } catch (const Error& e) {
      ::fprintf(stderr, "dslaunch node agent %d: %s; stopping\n", plan_.node_rank, e.what());
      stop();
    }
  }

  // Every rank has ended: clear out anything they left in the group, then DONE.
  void finish() {
    if (group_) {
      if (group_->has_members()) {
        group_->signal(SIGTERM);
        const int64_t deadline = now_ms() + plan_.grace_ms;
        while (group_->has_members() && now_ms() < deadline) ::usleep(50 * 1000);
      }
      group_->kill_all();
    }
    // Leftover writers are dead now; take what they wrote, without waiting on a
    // pipe someone outside the group might still hold.
    const int64_t deadline = now_ms() + 200;
    for (auto& r : ranks_) {
      for (int s = 0; s < 2; ++s) {
        while (r->fds[s] >= 0 && now_ms() < deadline) {
          pollfd p{r->fds[s], POLLIN, 0};
          ::poll(&p, 1, 50);
          read_output(*r, s, true);
        }
        if (r->fds[s] >= 0) ::close(r->fds[s]);
        r->fds[s] = -1;
      }
    }
    send({"DONE", {}});
  }

  int in_, out_;
  FrameReader reader_;
  SignalPipe signals_{SIGCHLD, SIGTERM, SIGINT, SIGHUP};
  AgentPlan plan_;
  std::unique_ptr<RankGroup> group_;
  std::vector<std::unique_ptr<Rank>> ranks_;
  bool stopping_ = false;
  bool input_closed_ = false;
  bool link_lost_ = false;
  int64_t kill_at_ = 0;
  int64_t last_heard_ = 0;
};

}  // namespace

int run_node_agent(int in_fd, int out_fd) {
  ::signal(SIGPIPE, SIG_IGN);  // a dead link shows up as a failed write instead
  try {
    return NodeAgent(in_fd, out_fd).run();
  } catch (const Error& e) {
    ::fprintf(stderr, "dslaunch node agent: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace ds::launcher
