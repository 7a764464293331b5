#include "launcher/supervisor.h"

#include <poll.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>

#include "launcher/exit_status.h"
#include "launcher/io.h"
#include "launcher/protocol.h"
#include "launcher/signals.h"
#include "util/error.h"

namespace ds::launcher {

namespace {

constexpr int kPingEveryMs = 2000;
// Beyond the agents' own teardown (grace, then the same again for strays), how
// long we wait for their DONE before cutting them off.
constexpr int kStopSlackMs = 3000;

struct RankState {
  const NodePlan* node = nullptr;
  int local_rank = 0;
  bool supervised = false;  // its node's agent is ours (with --no_ssh only one node is)
  bool exited = false;
  int code = 0;
  int sig = 0;
  std::deque<std::string> tail;
  std::unique_ptr<std::ofstream> log;
};

struct NodeState {
  AgentConnection agent;
  FrameReader reader{true};
  bool finished = false;  // DONE seen, or the link ended
  bool done = false;      // DONE seen
  int64_t last_heard = 0;
};

struct Failure {
  int rank = -1;  // -1: a node-level failure
  int node = -1;
  int code = 1;
  std::string what;
};

class Supervisor {
 public:
  Supervisor(const Plan& plan, std::vector<AgentConnection> agents, const SupervisorOptions& o,
             SignalPipe* signals)
      : plan_(plan), o_(o), signals_(signals), ranks_(plan.world_size) {
    for (const NodePlan& n : plan.nodes) {
      for (int l = 0; l < n.size(); ++l) {
        ranks_[n.first_rank + l].node = &n;
        ranks_[n.first_rank + l].local_rank = l;
      }
    }
    for (AgentConnection& a : agents) {
      for (int l = 0; l < a.node->size(); ++l) ranks_[a.node->first_rank + l].supervised = true;
      auto node = std::make_unique<NodeState>();
      node->agent = std::move(a);
      node->last_heard = now_ms();
      nodes_.push_back(std::move(node));
    }
    if (!o_.log_dir.empty()) std::filesystem::create_directories(o_.log_dir);
  }

  int run() {
    for (auto& n : nodes_) {
      const int ms = o_.heartbeat_ms;
      send(*n, plan_message(agent_plan(plan_, *n->agent.node, o_.grace_ms, ms)));
    }
    int64_t next_ping = now_ms() + kPingEveryMs;
    while (!all_finished()) {
      std::vector<pollfd> fds;
      if (signals_) fds.push_back({signals_->fd(), POLLIN, 0});
      std::vector<NodeState*> owners;
      for (auto& n : nodes_) {
        if (n->finished) continue;
        fds.push_back({n->agent.link->fd(), POLLIN, 0});
        owners.push_back(n.get());
      }
      ::poll(fds.data(), fds.size(), 200);
      size_t i = 0;
      if (signals_) {
        for (int sig : signals_->drain()) on_signal(sig);
        ++i;
      }
      for (NodeState* n : owners) {
        if (fds[i++].revents) read_node(*n);
      }
      std::fflush(o_.out);
      std::fflush(o_.err);
      const int64_t now = now_ms();
      if (now >= next_ping) {
        for (auto& n : nodes_) {
          if (!n->finished) send(*n, {"PING", {}});
        }
        next_ping = now + kPingEveryMs;
      }
      for (auto& n : nodes_) {
        if (!n->finished && now - n->last_heard > o_.heartbeat_ms) {
          fail_node(*n, fmt::format("no word from it for {} s", o_.heartbeat_ms / 1000));
          finish_node(*n);
        }
      }
      if (stop_deadline_ && now > *stop_deadline_) {
        for (auto& n : nodes_) {
          if (n->finished) continue;
          note(
              fmt::format("node {} ({}) did not confirm its ranks stopped; cut it off (its agent "
                          "stops them when its input ends)",
                          n->agent.node->node_rank, n->agent.node->host.key()));
          finish_node(*n);
        }
      }
    }
    return conclude();
  }

 private:
  void note(const std::string& text) { fmt::print(o_.err, "dslaunch: {}\n", text); }

  void send(NodeState& n, const Message& m) {
    if (!write_all(n.agent.link->fd(), encode(m))) {
      // The read side will see the link end and report it.
    }
  }

  bool all_finished() const {
    for (const auto& n : nodes_) {
      if (!n->finished) return false;
    }
    return true;
  }

  void stop_all() {
    if (stop_deadline_) return;
    stop_deadline_ = now_ms() + 2 * o_.grace_ms + kStopSlackMs;
    for (auto& n : nodes_) {
      if (!n->finished) send(*n, {"STOP", {}});
    }
  }

  void on_signal(int sig) {
    if (interrupted_) {
      // A second signal: don't wait for confirmations. Cutting the links makes
      // every agent stop its ranks on its own.
      note(fmt::format("{} again: cutting off every node now", signal_name(sig)));
      for (auto& n : nodes_) finish_node(*n);
      return;
    }
    interrupted_ = sig;
    note(fmt::format("got {}: stopping all {} ranks", signal_name(sig), plan_.world_size));
    stop_all();
  }

  void finish_node(NodeState& n) {
    if (n.finished) return;
    n.finished = true;
    n.agent.link->disconnect();
  }

  void fail_node(NodeState& n, const std::string& what) {
    if (!failure_ && !interrupted_) {
      failure_ = Failure{
          -1, n.agent.node->node_rank, 1,
          fmt::format("node {} ({}): {}", n.agent.node->node_rank, n.agent.node->host.key(), what)};
    }
    stop_all();
  }

  void read_node(NodeState& n) {
    char buf[65536];
    const ssize_t got = ::read(n.agent.link->fd(), buf, sizeof buf);
    if (got < 0 && errno == EINTR) return;
    if (got <= 0) {
      if (!n.done) {
        if (!all_ranks_exited(*n.agent.node)) {
          fail_node(n,
                    "lost the connection to its agent; its ranks are stopped by the agent "
                    "when it notices");
        }
      }
      finish_node(n);
      return;
    }
    n.last_heard = now_ms();
    n.reader.feed(std::string_view(buf, static_cast<size_t>(got)));
    try {
      while (auto m = n.reader.next()) handle(n, *m);
    } catch (const Error& e) {
      fail_node(n, e.what());
      finish_node(n);
    }
    const std::string noise = n.reader.take_noise();
    if (!noise.empty()) {
      for (const std::string& line : split_lines(noise)) {
        note(fmt::format("node {} ({}) printed before its agent started: {}",
                         n.agent.node->node_rank, n.agent.node->host.key(), line));
      }
    }
  }

  static std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string::npos) nl = text.size();
      if (nl > start) out.push_back(text.substr(start, nl - start));
      start = nl + 1;
    }
    return out;
  }

  bool all_ranks_exited(const NodePlan& node) const {
    for (int l = 0; l < node.size(); ++l) {
      if (!ranks_[node.first_rank + l].exited) return false;
    }
    return true;
  }

  RankState& rank_at(const Message& m, size_t i) {
    const int r = m.int_at(i);
    if (r < 0 || r >= plan_.world_size) throw Error(fmt::format("protocol: no rank {}", r));
    return ranks_[r];
  }

  void handle(NodeState& n, const Message& m) {
    if (m.type == "OUT") {
      const int rank = m.int_at(0);
      output(rank_at(m, 0), rank, m.int_at(1), m.at(2));
    } else if (m.type == "EXIT") {
      const int rank = m.int_at(0);
      RankState& r = rank_at(m, 0);
      r.exited = true;
      r.code = m.int_at(1);
      r.sig = m.int_at(2);
      if (r.code != 0 && !failure_ && !interrupted_) {
        failure_ = Failure{rank, r.node->node_rank, r.code, ""};
        stop_all();
      }
    } else if (m.type == "DONE") {
      n.done = true;
      finish_node(n);
    } else if (m.type == "ERROR") {
      note(fmt::format("node {} ({}): {}", n.agent.node->node_rank, n.agent.node->host.key(),
                       m.at(0)));
      fail_node(n, m.at(0));
    }
    // HELLO, STARTED and PING need nothing beyond last_heard.
  }

  void output(RankState& r, int rank, int stream, const std::string& line) {
    std::string prefix;
    if (o_.prefix == Prefix::kRank) prefix = fmt::format("[rank {}] ", rank);
    if (o_.prefix == Prefix::kHost) prefix = fmt::format("[{} rank {}] ", r.node->host.key(), rank);
    try {
      fmt::print(stream == 2 ? o_.err : o_.out, "{}{}\n", prefix, line);
    } catch (const std::exception&) {
      // Our stdout went away (`dslaunch ... | head`): the run goes on, unwatched
      // lines only reach the log files.
    }
    r.tail.push_back(line);
    if (static_cast<int>(r.tail.size()) > o_.tail_lines) r.tail.pop_front();
    if (!o_.log_dir.empty()) {
      if (!r.log) {
        const auto path = std::filesystem::path(o_.log_dir) / fmt::format("rank{}.log", rank);
        r.log = std::make_unique<std::ofstream>(path, std::ios::app);
      }
      *r.log << line << '\n';
      r.log->flush();
    }
  }

  int conclude() {
    int unfinished = 0;
    for (const RankState& r : ranks_) unfinished += r.supervised && !r.exited ? 1 : 0;
    if (interrupted_) {
      note(fmt::format("interrupted by {}: stopped every rank of run {}", signal_name(interrupted_),
                       plan_.run_id));
      return 128 + interrupted_;
    }
    if (!failure_) {
      if (unfinished == 0) return 0;
      failure_ =
          Failure{-1, -1, 1, fmt::format("{} ranks never reported an exit status", unfinished)};
    }
    std::FILE* err = o_.err;
    if (failure_->rank >= 0) {
      const RankState& r = ranks_[failure_->rank];
      fmt::print(err, "dslaunch: rank {} on {} (node {}, local rank {}) {}\n", failure_->rank,
                 r.node->host.key(), r.node->node_rank, r.local_rank, describe_exit(r.code, r.sig));
      const std::string hint = exit_hint(r.code, r.sig);
      if (!hint.empty()) fmt::print(err, "  hint: {}\n", hint);
      if (r.tail.empty()) {
        fmt::print(err, "  rank {} printed nothing\n", failure_->rank);
      } else {
        fmt::print(err, "  last {} lines of rank {}:\n", r.tail.size(), failure_->rank);
        for (const std::string& line : r.tail) fmt::print(err, "    | {}\n", line);
      }
    } else {
      fmt::print(err, "dslaunch: {}\n", failure_->what);
    }
    int stopped = 0;
    for (size_t i = 0; i < ranks_.size(); ++i) {
      if (static_cast<int>(i) != failure_->rank && ranks_[i].supervised &&
          (ranks_[i].sig != 0 || !ranks_[i].exited)) {
        ++stopped;
      }
    }
    fmt::print(err,
               "dslaunch: run {} failed; stopped the other ranks ({} {} still running); "
               "exit code {}\n",
               plan_.run_id, stopped, stopped == 1 ? "was" : "were", failure_->code);
    std::fflush(err);
    return failure_->code;
  }

  const Plan& plan_;
  const SupervisorOptions& o_;
  SignalPipe* signals_;
  std::vector<RankState> ranks_;
  std::vector<std::unique_ptr<NodeState>> nodes_;
  std::optional<Failure> failure_;
  std::optional<int64_t> stop_deadline_;
  int interrupted_ = 0;
};

}  // namespace

int supervise(const Plan& plan, std::vector<AgentConnection> agents,
              const SupervisorOptions& options, SignalPipe* signals) {
  return Supervisor(plan, std::move(agents), options, signals).run();
}

}  // namespace ds::launcher
