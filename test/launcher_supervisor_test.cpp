// The supervisor against fake node agents (threads speaking the protocol over a
// socketpair): first failure stops everyone, exit codes, summaries, lost nodes.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <thread>

#include "launcher/io.h"
#include "launcher/protocol.h"
#include "launcher/runner.h"
#include "launcher/supervisor.h"

using Catch::Matchers::Contains;
namespace dl = ds::launcher;

namespace {

// supervise() writes to agent links that may already be closed; like launch() (and every
// dslaunch process) the test process must ignore SIGPIPE so that shows up as a failed write.
const bool kSigpipeIgnored = [] {
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();

// The agent's end of a link.
class FakeAgentSide {
 public:
  explicit FakeAgentSide(int fd) : fd_(fd) {}
  void send(const dl::Message& m) { dl::write_all(fd_, dl::encode(m)); }
  void hang_up() { ::shutdown(fd_, SHUT_RDWR); }
  // The next message other than PING, or nullopt when the link ends or `ms` pass. While
  // it waits it pings every 100 ms, as a live agent does, so that only an agent that
  // means to be silent ever is.
  std::optional<dl::Message> receive(int ms = 5000) {
    const int64_t deadline = dl::now_ms() + ms;
    int64_t next_ping = 0;
    while (dl::now_ms() < deadline) {
      if (dl::now_ms() >= next_ping) {
        send({"PING", {}});
        next_ping = dl::now_ms() + 100;
      }
      while (auto m = reader_.next()) {
        if (m->type != "PING") return m;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      reader_.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
    return std::nullopt;
  }
  std::vector<int> plan_ranks() {
    auto m = receive();
    REQUIRE(m);
    std::vector<int> ranks;
    for (const auto& r : dl::parse_plan(*m).ranks) ranks.push_back(r.rank);
    return ranks;
  }
  void exit_rank(int rank, int code, int sig = 0) {
    send({"EXIT", {std::to_string(rank), std::to_string(code), std::to_string(sig)}});
  }
  void out(int rank, const std::string& line, int stream = 1) {
    send({"OUT", {std::to_string(rank), std::to_string(stream), line}});
  }
  // Waits for STOP, then reports its ranks terminated.
  void stop_on_request(const std::vector<int>& ranks) {
    auto m = receive();
    REQUIRE(m);
    CHECK(m->type == "STOP");
    for (int r : ranks) exit_rank(r, 143, 15);
    send({"DONE", {}});
  }

 private:
  int fd_;
  dl::FrameReader reader_{false};
};

class FakeLink : public dl::AgentLink {
 public:
  explicit FakeLink(std::function<void(FakeAgentSide&)> agent) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fd_ = sv[0];
    agent_fd_ = sv[1];
    thread_ = std::thread([this, agent] {
      FakeAgentSide side(agent_fd_);
      side.send({"HELLO", {}});
      agent(side);
    });
  }
  ~FakeLink() override {
    thread_.join();
    ::close(fd_);
    ::close(agent_fd_);
  }
  int fd() const override { return fd_; }
  void disconnect() override { ::shutdown(fd_, SHUT_RDWR); }

 private:
  int fd_ = -1, agent_fd_ = -1;
  std::thread thread_;
};

struct Outcome {
  int code;
  std::string out, err;
};

// Two nodes of two ranks each, every node played by `agents[i]`.
Outcome supervise(std::vector<std::function<void(FakeAgentSide&)>> agents,
                  int heartbeat_ms = 30000) {
  dl::Plan plan = dl::make_plan(dl::select_resources(
      dl::parse_hostfile("n1 slots=2\nn2 slots=2\n", "h"), {"", "", -1, -1, true}));
  plan.argv = {"prog"};
  plan.run_id = "test-run";
  std::vector<dl::AgentConnection> conns;
  for (size_t i = 0; i < agents.size(); ++i) {
    conns.push_back({&plan.nodes[i], std::make_unique<FakeLink>(agents[i])});
  }
  dl::SupervisorOptions o;
  o.grace_ms = 200;
  o.heartbeat_ms = heartbeat_ms;
  o.tail_lines = 3;
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  o.out = out;
  o.err = err;
  Outcome r;
  r.code = dl::supervise(plan, std::move(conns), o, nullptr);
  for (auto [f, s] : {std::pair{out, &r.out}, std::pair{err, &r.err}}) {
    std::fflush(f);
    std::rewind(f);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s->append(buf, n);
    std::fclose(f);
  }
  return r;
}

void all_succeed(FakeAgentSide& a) {
  for (int r : a.plan_ranks()) {
    a.out(r, "hello from " + std::to_string(r));
    a.exit_rank(r, 0);
  }
  a.send({"DONE", {}});
}

}  // namespace

TEST_CASE("supervisor: every rank succeeds -> 0, output prefixed by rank", "[launcher]") {
  const Outcome r = supervise({all_succeed, all_succeed});
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("[rank 0] hello from 0"));
  CHECK_THAT(r.out, Contains("[rank 3] hello from 3"));
}

TEST_CASE("supervisor: the first failure stops every node and sets the exit code", "[launcher]") {
  const auto failing = [](FakeAgentSide& a) {
    const auto ranks = a.plan_ranks();  // 2, 3
    for (int i = 0; i < 5; ++i) a.out(3, "step " + std::to_string(i), 2);
    a.exit_rank(3, 3);
    a.stop_on_request({2});
  };
  const auto waiting = [](FakeAgentSide& a) { a.stop_on_request(a.plan_ranks()); };
  const Outcome r = supervise({waiting, failing});
  CHECK(r.code == 3);
  CHECK_THAT(r.err, Contains("rank 3 on n2 (node 1, local rank 1) exited with code 3"));
  CHECK_THAT(r.err, Contains("last 3 lines of rank 3"));
  CHECK_THAT(r.err, Contains("| step 4"));
  CHECK_THAT(r.err, !Contains("| step 1"));
  CHECK_THAT(r.err, Contains("[rank 3] step 0"));  // stderr lines go to stderr
}

TEST_CASE("supervisor: a signal death gives 128+N and a hint", "[launcher]") {
  const auto killed = [](FakeAgentSide& a) {
    a.plan_ranks();
    a.exit_rank(0, 137, 9);
    a.stop_on_request({1});
  };
  const auto waiting = [](FakeAgentSide& a) { a.stop_on_request(a.plan_ranks()); };
  const Outcome r = supervise({killed, waiting});
  CHECK(r.code == 137);
  CHECK_THAT(r.err, Contains("was killed by SIGKILL"));
  CHECK_THAT(r.err, Contains("out of memory"));
}

TEST_CASE("supervisor: a dropped or silent node fails the run and stops the others", "[launcher]") {
  const auto waiting = [](FakeAgentSide& a) { a.stop_on_request(a.plan_ranks()); };
  const auto dropping = [](FakeAgentSide& a) {
    a.plan_ranks();
    a.hang_up();  // what a dead SSH connection looks like
  };
  Outcome r = supervise({dropping, waiting});
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("node 0 (n1): lost the connection to its agent"));

  const auto silent = [](FakeAgentSide& a) {
    a.plan_ranks();
    a.send({"STARTED", {"0", "1"}});  // ...and then nothing, not even PING
  };
  r = supervise({silent, waiting}, 600);
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("node 0 (n1): no word from it"));
}

TEST_CASE("supervisor: an agent error fails the run with its message", "[launcher]") {
  const auto erroring = [](FakeAgentSide& a) {
    a.plan_ranks();
    a.send({"ERROR", {"cannot enter workdir /x: No such file or directory"}});
    a.send({"DONE", {}});
  };
  const auto waiting = [](FakeAgentSide& a) { a.stop_on_request(a.plan_ranks()); };
  const Outcome r = supervise({erroring, waiting});
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("cannot enter workdir /x"));
}
