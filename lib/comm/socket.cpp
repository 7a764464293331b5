#include "comm/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ds::comm {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
}

// Waits for `events` on fd; false at the deadline.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    const int ms = remaining_ms(deadline);
    const int n = ::poll(&p, 1, ms);
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) throw SocketError(SocketError::Kind::kOther, "poll: " + errno_text(errno));
  }
}

std::string address_text(const sockaddr* sa) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  const socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV)) {
    return "?";
  }
  return sa->sa_family == AF_INET6 ? fmt::format("[{}]:{}", host, port)
                                   : fmt::format("{}:{}", host, port);
}

}  // namespace

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Fd listen_tcp(int port, int backlog) {
  // Dual-stack first so that MASTER_ADDR may be an IPv4 or an IPv6 address.
  Fd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.valid()) {
    int off = 0;
    int on = 1;
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_any;
    addr.sin6_port = htons(static_cast<uint16_t>(port));
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::listen(fd.get(), backlog) == 0) {
      return fd;
    }
    if (errno == EADDRINUSE) {
      throw Error(fmt::format("cannot listen on port {}: it is already in use", port),
                  "another run (or a stale process) holds MASTER_PORT; pick another port");
    }
  }
  fd = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) throw Error("socket: " + errno_text(errno));
  int on = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd.get(), backlog) != 0) {
    throw Error(fmt::format("cannot listen on port {}: {}", port, errno_text(errno)),
                "pick another MASTER_PORT (1024-65535) that no other program uses");
  }
  return fd;
}

int listening_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return -1;
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

Fd connect_tcp(const std::string& host, int port, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    throw SocketError(SocketError::Kind::kOther,
                      fmt::format("cannot resolve '{}': {}", host, gai_strerror(rc)));
  }
  std::string last = "no address";
  SocketError::Kind kind = SocketError::Kind::kOther;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd.valid()) continue;
    set_nonblocking(fd.get(), true);
    int rc = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      if (!wait_for(fd.get(), POLLOUT, deadline)) {
        last = "timed out";
        kind = SocketError::Kind::kTimeout;
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc == 0) {
      set_nonblocking(fd.get(), false);
      set_nodelay(fd.get());
      ::freeaddrinfo(found);
      return fd;
    }
    last = errno_text(errno);
    kind = errno == ECONNREFUSED ? SocketError::Kind::kRefused : SocketError::Kind::kOther;
  }
  ::freeaddrinfo(found);
  throw SocketError(kind, fmt::format("cannot connect to {}:{}: {}", host, port, last));
}

void set_nonblocking(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  ::fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
}

void set_nodelay(int fd) {
  int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

void write_all(int fd, const void* data, size_t size, Clock::time_point deadline) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd, POLLOUT, deadline)) {
        throw SocketError(SocketError::Kind::kTimeout, "timed out sending");
      }
      continue;
    }
    if (errno == EPIPE || errno == ECONNRESET) {
      throw SocketError(SocketError::Kind::kClosed, "connection closed by the peer");
    }
    throw SocketError(SocketError::Kind::kOther, "send: " + errno_text(errno));
  }
}

void read_all(int fd, void* data, size_t size, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::recv(fd, p, size, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) throw SocketError(SocketError::Kind::kClosed, "connection closed by the peer");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(fd, POLLIN, deadline)) {
        throw SocketError(SocketError::Kind::kTimeout, "timed out receiving");
      }
      continue;
    }
    if (errno == ECONNRESET) {
      throw SocketError(SocketError::Kind::kClosed, "connection reset by the peer");
    }
    throw SocketError(SocketError::Kind::kOther, "recv: " + errno_text(errno));
  }
}

std::string local_address_toward(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), "9", &hints, &found) != 0 || found == nullptr) {
    throw UsageError(fmt::format("cannot resolve MASTER_ADDR '{}'", host),
                     "set MASTER_ADDR to an address or host name every rank can resolve");
  }
  // Connecting a UDP socket sends nothing; it only asks the kernel which source address
  // it would route from, which is the interface peers can reach us on.
  std::string result;
  for (addrinfo* ai = found; ai != nullptr && result.empty(); ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd.valid() || ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &len) != 0) continue;
    char text[NI_MAXHOST];
    if (::getnameinfo(reinterpret_cast<sockaddr*>(&local), len, text, sizeof text, nullptr, 0,
                      NI_NUMERICHOST) == 0) {
      result = text;
    }
  }
  ::freeaddrinfo(found);
  if (result.empty()) {
    throw Error(fmt::format("no network route from this host to MASTER_ADDR '{}'", host),
                "check MASTER_ADDR, or name the interface with DS_SOCKET_IFNAME");
  }
  return result;
}

std::string interface_address(const std::string& ifname) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) throw Error("getifaddrs: " + errno_text(errno));
  std::string v4, v6;
  for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || ifname != it->ifa_name) continue;
    char text[NI_MAXHOST];
    const int family = it->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    const socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (::getnameinfo(it->ifa_addr, len, text, sizeof text, nullptr, 0, NI_NUMERICHOST) != 0) {
      continue;
    }
    if (family == AF_INET && v4.empty()) v4 = text;
    if (family == AF_INET6 && v6.empty() && std::strncmp(text, "fe80", 4) != 0) v6 = text;
  }
  ::freeifaddrs(list);
  if (!v4.empty()) return v4;
  if (!v6.empty()) return v6;
  throw UsageError(
      fmt::format("DS_SOCKET_IFNAME='{}': no such interface with an IP address", ifname),
      "list interfaces with `ip -brief addr` and name one that has an address");
}

std::string peer_name(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  return address_text(reinterpret_cast<sockaddr*>(&addr));
}

int pick_free_port() {
  Fd fd = listen_tcp(0, 1);
  return listening_port(fd.get());
}

}  // namespace ds::comm
