#include "launcher/io.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace ds::launcher {

bool write_all(int fd, std::string_view bytes) {
  // On sockets, MSG_NOSIGNAL: a peer that went away is an error to handle, not a
  // SIGPIPE that kills the process (pipes get that from the caller's SIG_IGN).
  bool socket = true;
  while (!bytes.empty()) {
    ssize_t n = socket ? ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) : -1;
    if (n < 0 && socket && errno == ENOTSOCK) {
      socket = false;
      n = ::write(fd, bytes.data(), bytes.size());
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void set_nonblocking(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool LineBuffer::next(std::string& line) {
  const size_t nl = buffer_.find('\n');
  if (nl == std::string::npos) {
    if (buffer_.size() < kMaxLine) return false;
    line = buffer_.substr(0, kMaxLine);
    buffer_.erase(0, kMaxLine);
    return true;
  }
  line = buffer_.substr(0, nl);
  buffer_.erase(0, nl + 1);
  return true;
}

bool LineBuffer::flush(std::string& line) {
  if (buffer_.empty()) return false;
  line = std::move(buffer_);
  buffer_.clear();
  return true;
}

}  // namespace ds::launcher
