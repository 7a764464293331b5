// Small POSIX I/O helpers shared by the agent, the runners and the supervisor.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ds::launcher {

// Writes everything, retrying on EINTR and short writes; false on error (EPIPE...),
// never SIGPIPE on a socket.
bool write_all(int fd, std::string_view bytes);
void set_nonblocking(int fd, bool on = true);
// Milliseconds on a monotonic clock.
int64_t now_ms();

// Splits a byte stream into lines. Over-long lines come out in pieces so one
// chatty rank can't grow memory without bound.
class LineBuffer {
 public:
  static constexpr size_t kMaxLine = 64 * 1024;
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  bool next(std::string& line);   // a complete line, without its '\n'
  bool flush(std::string& line);  // whatever is left (at EOF)

 private:
  std::string buffer_;
};

}  // namespace ds::launcher
