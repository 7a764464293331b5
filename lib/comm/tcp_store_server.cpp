#include "comm/tcp_store_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "comm/hash_store.h"
#include "comm/store_wire.h"
#include "util/log.h"

namespace ds::comm {

std::string gone_rank_key(int rank) { return fmt::format("__ds/gone/{}", rank); }

namespace {

using wire::FrameReader;
using wire::FrameWriter;
using wire::Op;
using wire::Reply;

// A hello is tiny: anything bigger from a client that has not authenticated is not ours.
constexpr uint32_t kMaxHelloBytes = 4096;
// A client that never reads its replies must not make the server buffer without bound.
constexpr size_t kMaxPendingOutput = 64u << 20;
constexpr size_t kMaxStrangers = 256;

bool equal_constant_time(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Strangers on the port (scanners, typos, attackers) could flood the log; this lets a few
// lines through per window and counts the rest.
class LogLimiter {
 public:
  void warn(const std::string& message) {
    const auto now = Clock::now();
    if (now - window_start_ > std::chrono::seconds(10)) {
      if (suppressed_ > 0) {
        log::warn("store: {} more dropped connections were not logged", suppressed_);
      }
      window_start_ = now;
      in_window_ = 0;
      suppressed_ = 0;
    }
    if (++in_window_ <= 5) {
      log::warn("store: {}", message);
    } else {
      ++suppressed_;
    }
  }

 private:
  Clock::time_point window_start_{};
  int in_window_ = 0;
  uint64_t suppressed_ = 0;
};

struct Connection {
  Fd fd;
  std::string peer;
  std::string input;
  std::string output;
  bool authenticated = false;
  bool closing = false;  // closed; erased at the end of the poll round (see sweep)
  int64_t rank = -1;
  Clock::time_point auth_deadline;
};

struct Waiter {
  uint64_t connection;
  Op op;  // kGet or kWait
  std::vector<std::string> keys;
  Clock::time_point deadline;
  std::string blocked_on;  // the first of `keys` found missing
};

}  // namespace

class TcpStoreServer::Loop {
 public:
  Loop(TcpStoreServerOptions options, Fd listener)
      : options_(std::move(options)), listener_(std::move(listener)) {
    int pipe_fds[2];
    DS_CHECK(::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2 failed");
    wake_read_ = Fd(pipe_fds[0]);
    wake_write_ = Fd(pipe_fds[1]);
    set_nonblocking(listener_.get(), true);
  }

  void stop() {
    stopping_ = true;
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_write_.get(), &byte, 1);
  }

  Stats stats() const {
    std::lock_guard lock(stats_mutex_);
    return stats_;
  }

  void wait_for_ranks_to_leave(Milliseconds timeout) const {
    std::unique_lock lock(stats_mutex_);
    ranks_left_.wait_for(lock, timeout, [&] { return connected_ranks_ == 0; });
  }

  void run() {
    while (!stopping_) {
      try {
        poll_once();
      } catch (const std::exception& e) {
        // The loop must outlive any one bad event; log and go on serving.
        log::warn("store: internal error, continuing: {}", e.what());
      }
    }
    answer_waiters_at_shutdown();
  }

 private:
  void poll_once() {
    std::vector<pollfd> fds;
    std::vector<uint64_t> ids;
    fds.push_back({wake_read_.get(), POLLIN, 0});
    fds.push_back({listener_.get(), POLLIN, 0});
    for (auto& [id, c] : connections_) {
      if (c.closing) continue;
      short events = POLLIN;
      if (!c.output.empty()) events |= POLLOUT;
      fds.push_back({c.fd.get(), events, 0});
      ids.push_back(id);
    }
    const int rc = ::poll(fds.data(), fds.size(), next_timeout_ms());
    if (rc < 0 && errno != EINTR) throw Error(fmt::format("poll: {}", std::strerror(errno)));
    if (stopping_) return;
    if (rc > 0) {
      if (fds[1].revents & POLLIN) accept_all();
      for (size_t i = 0; i < ids.size(); ++i) {
        const short ev = fds[i + 2].revents;
        if (ev == 0) continue;
        auto it = connections_.find(ids[i]);
        if (it == connections_.end() || it->second.closing) continue;
        if (ev & (POLLIN | POLLHUP | POLLERR)) {
          if (!on_readable(ids[i], it->second)) continue;
        }
        if (ev & POLLOUT) flush(ids[i], it->second);
      }
    }
    expire(Clock::now());
    sweep();
  }

  // The server goes away with rank 0 (which may be giving up on a rendezvous itself): the
  // ranks still waiting get their missing keys now, so they report what was missing rather
  // than a lost connection.
  void answer_waiters_at_shutdown() {
    std::map<uint64_t, Waiter> all = std::move(waiters_);
    waiters_.clear();
    for (auto& [id, w] : all) answer_timeout(w);
  }

  // Connections are erased only here, so no handler ever holds a reference to a freed one.
  void sweep() {
    std::erase_if(connections_, [](const auto& entry) { return entry.second.closing; });
  }

  int next_timeout_ms() const {
    auto next = Clock::now() + std::chrono::seconds(1);
    for (const auto& [id, w] : waiters_) next = std::min(next, w.deadline);
    for (const auto& [id, c] : connections_) {
      if (!c.authenticated && !c.closing) next = std::min(next, c.auth_deadline);
    }
    const auto ms = std::chrono::duration_cast<Milliseconds>(next - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(ms + 1, 0, 1000));
  }

  void accept_all() {
    while (true) {
      const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR) continue;
        if (errno == EMFILE || errno == ENFILE) {
          // The listener stays readable; pause so that the loop does not spin on it.
          limiter_.warn("out of file descriptors; not accepting for a moment");
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return;  // EAGAIN, or a connection that died in the backlog
      }
      Connection c;
      c.fd = Fd(fd);
      c.peer = peer_name(fd);
      bump(&Stats::accepted);
      if (connections_.size() >= options_.max_connections) {
        drop_new(c, "too many connections");
        continue;
      }
      evict_oldest_stranger_if_crowded();
      c.auth_deadline = Clock::now() + options_.auth_timeout;
      connections_.emplace(next_id_++, std::move(c));
    }
  }

  // A flood of connections that never authenticate must not lock out the run's own ranks:
  // past a limit, the oldest unauthenticated one makes room.
  void evict_oldest_stranger_if_crowded() {
    size_t strangers = 0;
    uint64_t oldest = 0;
    for (const auto& [id, c] : connections_) {
      if (c.authenticated || c.closing) continue;
      if (strangers++ == 0) oldest = id;
    }
    if (strangers >= kMaxStrangers) close(oldest, "too many unauthenticated connections");
  }

  void drop_new(Connection& c, const std::string& why) {
    bump(&Stats::dropped);
    limiter_.warn(fmt::format("dropped connection from {}: {}", c.peer, why));
  }

  // Reads what is there and handles every complete frame; false when the connection closed.
  bool on_readable(uint64_t id, Connection& c) {
    char buffer[65536];
    size_t budget = 4u << 20;  // bytes per poll round, so one busy client cannot starve others
    while (budget > 0) {
      const ssize_t n = ::recv(c.fd.get(), buffer, sizeof buffer, 0);
      if (n > 0) {
        c.input.append(buffer, static_cast<size_t>(n));
        budget -= std::min(budget, static_cast<size_t>(n));
        if (!handle_frames(id, c)) return false;
        continue;
      }
      if (n == 0) {
        close(id, c.authenticated ? "" : "closed before authenticating (port scan?)");
        return false;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      close(id, c.authenticated ? "" : fmt::format("socket error: {}", std::strerror(errno)));
      return false;
    }
    return true;
  }

  bool handle_frames(uint64_t id, Connection& c) {
    size_t pos = 0;
    while (!c.closing && c.input.size() - pos >= 4) {
      const uint32_t len = wire::read_u32_le(c.input.data() + pos);
      const uint32_t limit = c.authenticated ? wire::kMaxFrameBytes : kMaxHelloBytes;
      if (len > limit) {
        close(id, fmt::format("frame of {} bytes exceeds the {} byte limit", len, limit));
        return false;
      }
      if (c.input.size() - pos - 4 < len) break;
      const std::string_view payload(c.input.data() + pos + 4, len);
      pos += 4 + len;
      try {
        if (!c.authenticated) {
          if (!authenticate(id, c, payload)) return false;
        } else {
          handle_request(id, c, payload);
        }
      } catch (const wire::WireError& e) {
        close(id, fmt::format("malformed request: {}", e.what()));
        return false;
      }
    }
    if (c.closing) return false;
    c.input.erase(0, pos);
    if (!c.output.empty()) flush(id, c);
    return !c.closing;
  }

  bool authenticate(uint64_t id, Connection& c, std::string_view payload) {
    FrameReader r(payload);
    if (r.u8() != static_cast<uint8_t>(Op::kHello) || r.str() != wire::kMagic) {
      close(id, "not a dstrain store client (bad hello)");
      return false;
    }
    const std::string token = r.str();
    const int64_t rank = r.i64();
    r.expect_end();
    if (!equal_constant_time(token, options_.token)) {
      // Tell a misconfigured rank why, then hang up; it learns nothing it did not send.
      queue(c, FrameWriter().u8(static_cast<uint8_t>(Reply::kReject)).str("wrong run token"));
      flush(id, c);
      close(id, "wrong run token (DS_RUN_TOKEN)");
      return false;
    }
    c.authenticated = true;
    c.rank = rank;
    bump(&Stats::authenticated);
    if (rank >= 0) {
      std::lock_guard lock(stats_mutex_);
      ++connected_ranks_;
    }
    queue(c, FrameWriter().u8(static_cast<uint8_t>(Reply::kOk)));
    return true;
  }

  void handle_request(uint64_t id, Connection& c, std::string_view payload) {
    FrameReader r(payload);
    const auto op = static_cast<Op>(r.u8());
    switch (op) {
      case Op::kSet: {
        std::string key = r.str();
        std::string value = r.str();
        r.expect_end();
        data_[key] = std::move(value);
        queue(c, FrameWriter().u8(static_cast<uint8_t>(Reply::kOk)));
        key_changed(key);
        return;
      }
      case Op::kGet:
      case Op::kWait: {
        std::vector<std::string> keys;
        if (op == Op::kGet) {
          keys.push_back(r.str());
        } else {
          keys = r.strings();
        }
        const Milliseconds timeout(std::max<int64_t>(0, r.i64()));
        r.expect_end();
        Waiter w{id, op, std::move(keys), Clock::now() + timeout, ""};
        if (!try_answer(w)) park(std::move(w));
        return;
      }
      case Op::kAdd: {
        const std::string key = r.str();
        const int64_t delta = r.i64();
        r.expect_end();
        int64_t value = delta;
        auto it = data_.find(key);
        try {
          if (it != data_.end()) value += parse_counter(key, it->second);
        } catch (const Error& e) {
          queue(c, FrameWriter().u8(static_cast<uint8_t>(Reply::kError)).str(e.what()));
          return;
        }
        data_[key] = std::to_string(value);
        queue(c, FrameWriter().u8(static_cast<uint8_t>(Reply::kInt)).i64(value));
        key_changed(key);
        return;
      }
      case Op::kCheck: {
        const auto keys = r.strings();
        r.expect_end();
        const bool all = std::all_of(keys.begin(), keys.end(),
                                     [&](const std::string& k) { return data_.contains(k); });
        queue(c, FrameWriter().u8(static_cast<uint8_t>(Reply::kBool)).i64(all ? 1 : 0));
        return;
      }
      case Op::kRemove: {
        const std::string key = r.str();
        r.expect_end();
        const bool existed = data_.erase(key) > 0;
        queue(c, FrameWriter().u8(static_cast<uint8_t>(Reply::kBool)).i64(existed ? 1 : 0));
        return;
      }
      case Op::kHello:
        break;
    }
    throw wire::WireError(fmt::format("unknown opcode {}", static_cast<int>(op)));
  }

  // The first key the waiter still lacks, or null when it has them all.
  const std::string* first_missing(const Waiter& w) const {
    for (const auto& k : w.keys) {
      if (!data_.contains(k)) return &k;
    }
    return nullptr;
  }

  // Answers a waiter whose keys are all present; false if some are still missing.
  bool try_answer(const Waiter& w) {
    if (first_missing(w) != nullptr) return false;
    auto it = connections_.find(w.connection);
    if (it == connections_.end() || it->second.closing) return true;
    if (w.op == Op::kGet) {
      queue(it->second,
            FrameWriter().u8(static_cast<uint8_t>(Reply::kValue)).str(data_[w.keys[0]]));
    } else {
      queue(it->second, FrameWriter().u8(static_cast<uint8_t>(Reply::kOk)));
    }
    flush(w.connection, it->second);
    return true;
  }

  void answer_timeout(const Waiter& w) {
    auto it = connections_.find(w.connection);
    if (it == connections_.end() || it->second.closing) return;
    std::vector<std::string> missing;
    for (const auto& k : w.keys) {
      if (!data_.contains(k)) missing.push_back(k);
    }
    queue(it->second, FrameWriter().u8(static_cast<uint8_t>(Reply::kTimeout)).strings(missing));
    flush(w.connection, it->second);
  }

  // Parks a waiter under the one key it is blocked on, so that a set looks only at the
  // waiters of that key: a rendezvous of n ranks costs O(n) checks per set, not O(n^2).
  void park(Waiter w) {
    const uint64_t id = next_waiter_++;
    w.blocked_on = *first_missing(w);
    blocked_on_[w.blocked_on].push_back(id);
    waiters_.emplace(id, std::move(w));
  }

  void unpark(uint64_t id, const Waiter& w) {
    auto it = blocked_on_.find(w.blocked_on);
    if (it == blocked_on_.end()) return;
    std::erase(it->second, id);
    if (it->second.empty()) blocked_on_.erase(it);
  }

  void key_changed(const std::string& key) {
    auto it = blocked_on_.find(key);
    if (it == blocked_on_.end()) return;
    const std::vector<uint64_t> ids = std::move(it->second);
    blocked_on_.erase(it);
    for (uint64_t id : ids) {
      auto w = waiters_.find(id);
      if (w == waiters_.end()) continue;
      if (const std::string* next = first_missing(w->second)) {
        w->second.blocked_on = *next;
        blocked_on_[*next].push_back(id);
        continue;
      }
      // Answering may close connections (and erase their waiters): take this one out first.
      const Waiter done = std::move(w->second);
      waiters_.erase(w);
      try_answer(done);
    }
  }

  void expire(Clock::time_point now) {
    std::vector<uint64_t> late;
    for (const auto& [id, w] : waiters_) {
      if (w.deadline <= now) late.push_back(id);
    }
    for (uint64_t id : late) {
      auto it = waiters_.find(id);
      if (it == waiters_.end()) continue;
      const Waiter w = std::move(it->second);
      waiters_.erase(it);
      unpark(id, w);
      answer_timeout(w);
    }
    std::vector<uint64_t> strangers;
    for (const auto& [id, c] : connections_) {
      if (!c.authenticated && !c.closing && c.auth_deadline <= now) strangers.push_back(id);
    }
    for (uint64_t id : strangers) close(id, "did not authenticate in time (half-open or idle)");
  }

  void queue(Connection& c, FrameWriter& frame) { c.output += frame.finish(); }
  void queue(Connection& c, FrameWriter&& frame) { c.output += frame.finish(); }

  void flush(uint64_t id, Connection& c) {
    if (c.closing) return;
    while (!c.output.empty()) {
      const ssize_t n = ::send(c.fd.get(), c.output.data(), c.output.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.output.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      close(id, c.authenticated ? "" : "send failed");
      return;
    }
    if (c.output.size() > kMaxPendingOutput) close(id, "client does not read its replies");
  }

  // Closes a connection. A non-empty `why` is a misbehaving client: counted and logged.
  void close(uint64_t id, const std::string& why) {
    auto it = connections_.find(id);
    if (it == connections_.end() || it->second.closing) return;
    Connection& c = it->second;
    if (!why.empty()) {
      bump(&Stats::dropped);
      limiter_.warn(fmt::format("dropped connection from {}: {}", c.peer, why));
    }
    const int64_t rank = c.authenticated ? c.rank : -1;
    c.closing = true;
    c.fd.reset();
    for (auto w = waiters_.begin(); w != waiters_.end();) {
      if (w->second.connection == id) {
        unpark(w->first, w->second);
        w = waiters_.erase(w);
      } else {
        ++w;
      }
    }
    if (rank >= 0) {
      const std::string gone = gone_rank_key(static_cast<int>(rank));
      data_[gone] = "closed its store connection";
      key_changed(gone);
      {
        std::lock_guard lock(stats_mutex_);
        --connected_ranks_;
      }
      ranks_left_.notify_all();
    }
  }

  void bump(uint64_t Stats::*field) {
    std::lock_guard lock(stats_mutex_);
    ++(stats_.*field);
  }

  TcpStoreServerOptions options_;
  Fd listener_;
  Fd wake_read_;
  Fd wake_write_;
  std::atomic<bool> stopping_{false};
  std::map<uint64_t, Connection> connections_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Waiter> waiters_;  // parked gets and waits, by id
  std::unordered_map<std::string, std::vector<uint64_t>> blocked_on_;
  uint64_t next_waiter_ = 1;
  std::unordered_map<std::string, std::string> data_;
  LogLimiter limiter_;
  mutable std::mutex stats_mutex_;
  mutable std::condition_variable ranks_left_;
  Stats stats_;
  int connected_ranks_ = 0;
};

TcpStoreServer::TcpStoreServer(TcpStoreServerOptions options) {
  Fd listener = listen_tcp(options.port);
  port_ = listening_port(listener.get());
  loop_ = std::make_unique<Loop>(std::move(options), std::move(listener));
  thread_ = std::thread([this] { loop_->run(); });
}

TcpStoreServer::~TcpStoreServer() {
  loop_->stop();
  if (thread_.joinable()) thread_.join();
}

TcpStoreServer::Stats TcpStoreServer::stats() const { return loop_->stats(); }

void TcpStoreServer::wait_for_ranks_to_leave(Milliseconds timeout) const {
  loop_->wait_for_ranks_to_leave(timeout);
}

}  // namespace ds::comm
