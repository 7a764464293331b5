#include "launcher/ssh_runner.h"

#include <libssh/libssh.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "launcher/env.h"
#include "launcher/io.h"
#include "launcher/preflight.h"
#include "util/error.h"

namespace ds::launcher {

namespace {

// Copies bytes both ways until either side ends, then drops the connection: the
// agent's input ends, which makes it stop its ranks.
void pump(std::unique_ptr<SshSession> session, ssh_channel channel, int sock,
          const std::string& node) {
  ssh_session raw = session->raw();
  LineBuffer err_lines;
  std::string line;
  char buf[65536];
  const auto relay_stderr = [&](bool final) {
    while (err_lines.next(line) || (final && err_lines.flush(line))) {
      fmt::print(stderr, "dslaunch: {}: {}\n", node, line);
    }
  };
  bool lost = false;
  while (true) {
    pollfd p[2] = {{sock, POLLIN, 0}, {ssh_get_fd(raw), POLLIN, 0}};
    ::poll(p, 2, 50);
    if (p[0].revents) {
      const ssize_t n = ::read(sock, buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;  // the launcher hung up
      if (n > 0 && ssh_channel_write(channel, buf, static_cast<uint32_t>(n)) == SSH_ERROR) {
        lost = true;
        break;
      }
    }
    int n;
    while ((n = ssh_channel_read_nonblocking(channel, buf, sizeof buf, 0)) > 0) {
      if (!write_all(sock, std::string_view(buf, static_cast<size_t>(n)))) break;
    }
    if (n == SSH_ERROR) {
      lost = true;
      break;
    }
    while ((n = ssh_channel_read_nonblocking(channel, buf, sizeof buf, 1)) > 0) {
      err_lines.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
    relay_stderr(false);
    if (n == SSH_ERROR) {
      lost = true;
      break;
    }
    if (ssh_channel_is_eof(channel) || ssh_channel_is_closed(channel)) break;
    if (!ssh_is_connected(raw)) {
      lost = true;
      break;
    }
  }
  relay_stderr(true);
  if (lost) fmt::print(stderr, "dslaunch: {}: connection lost: {}\n", node, ssh_get_error(raw));
  // The supervisor sees EOF; if the agent never said DONE, the node is lost.
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  if (!lost) ssh_channel_close(channel);
  ssh_channel_free(channel);
  session.reset();  // disconnects
}

class SshLink : public AgentLink {
 public:
  SshLink(int fd, std::thread pump) : fd_(fd), pump_(std::move(pump)) {}
  ~SshLink() override {
    disconnect();
    pump_.join();
    ::close(fd_);
  }
  int fd() const override { return fd_; }
  void disconnect() override { ::shutdown(fd_, SHUT_RDWR); }

 private:
  int fd_;
  std::thread pump_;
};

}  // namespace

SshRunner::~SshRunner() = default;

std::vector<NodeFacts> SshRunner::preflight(const std::vector<const NodePlan*>& nodes,
                                            const std::vector<PreflightRequest>& requests) {
  std::vector<NodeFacts> facts(nodes.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < nodes.size(); ++i) {
    threads.emplace_back([&, i] {
      const NodePlan& node = *nodes[i];
      const std::string name = fmt::format("node {} ({})", node.node_rank, node.host.spec());
      try {
        auto session = std::make_unique<SshSession>(node.host, settings_);
        const CommandResult r = session->run("sh -c " + shell_quote(preflight_script(requests[i])));
        facts[i] = parse_preflight(r.out, requests[i], name);
        if (facts[i].problems.empty() && r.status != 0 && r.out.find("end") == std::string::npos) {
          facts[i].problems.push_back(fmt::format("{}: preflight failed: {}", name, r.err));
        }
        std::lock_guard lock(mutex_);
        sessions_[node.node_rank] = std::move(session);
      } catch (const Error& e) {
        facts[i].problems.push_back(fmt::format(
            "{}: {}{}", name, e.what(), e.hint().empty() ? "" : "\n      hint: " + e.hint()));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return facts;
}

std::unique_ptr<AgentLink> SshRunner::start(const NodePlan& node, const NodeFacts& facts) {
  std::unique_ptr<SshSession> session;
  {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(node.node_rank);
    DS_CHECK(it != sessions_.end(), "node {} was not preflighted", node.node_rank);
    session = std::move(it->second);
    sessions_.erase(it);
  }
  const std::string command =
      "exec " + shell_join({facts.launcher, "--node-agent", "--run_id", run_id_});
  const std::string name = fmt::format("node {} ({})", node.node_rank, node.host.spec());
  ssh_channel channel = nullptr;
  try {
    channel = session->exec(command);
  } catch (const Error& e) {
    throw Error(name + ": " + e.what(), e.hint());
  }
  int sv[2];
  DS_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair failed: {}",
           std::strerror(errno));
  std::thread t(pump, std::move(session), channel, sv[1], name);
  return std::make_unique<SshLink>(sv[0], std::move(t));
}

}  // namespace ds::launcher
