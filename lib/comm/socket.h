// Thin POSIX socket helpers shared by the store, the TCP stream benchmark and the backends.
// Every blocking call takes a deadline: nothing in comm may wait on a peer forever.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <utility>

#include "util/error.h"

namespace ds::comm {

using Clock = std::chrono::steady_clock;

// A socket or other descriptor that closes itself.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset();

 private:
  int fd_ = -1;
};

// A read, write or connect that failed: peer gone, timeout, refused. what() says which.
class SocketError : public Error {
 public:
  enum class Kind { kTimeout, kClosed, kRefused, kOther };
  SocketError(Kind kind, std::string what) : Error(std::move(what)), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// A listening TCP socket on every local address (IPv6 dual-stack when available, else IPv4).
// Port 0 picks a free one; listening_port() tells which.
Fd listen_tcp(int port, int backlog = 512);
int listening_port(int fd);

// One connection attempt to host:port that gives up at `deadline`. Throws SocketError.
Fd connect_tcp(const std::string& host, int port, Clock::time_point deadline);

void set_nonblocking(int fd, bool on);
void set_nodelay(int fd);

// Whole-buffer I/O on a socket (blocking or not), bounded by `deadline`. Throws SocketError.
void write_all(int fd, const void* data, size_t size, Clock::time_point deadline);
void read_all(int fd, void* data, size_t size, Clock::time_point deadline);

// The local IP address this host uses to reach `host` (the interface the kernel routes
// through), e.g. "10.0.0.5"; what peers should connect back to.
std::string local_address_toward(const std::string& host);
// The IPv4/IPv6 address of a named interface (DS_SOCKET_IFNAME); throws UsageError if none.
std::string interface_address(const std::string& ifname);
// "10.0.0.7:51234" for the far end of a connected socket; "?" if unknown.
std::string peer_name(int fd);

// A TCP port that is free right now (bind to 0, read it, close): for tests and --np runs.
int pick_free_port();

}  // namespace ds::comm
