#include "comm/host_identity.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace ds::comm {
namespace {

std::string first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

unsigned long long inode_of(const char* path) {
  struct stat st {};
  return ::stat(path, &st) == 0 ? static_cast<unsigned long long>(st.st_ino) : 0;
}

// State letter and start time from /proc/<pid>/stat; false when the process is gone.
bool read_stat(int pid, char* state, unsigned long long* start_time) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text;
  if (!std::getline(in, text)) return false;
  // The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  fields >> *state;  // field 3
  for (int i = 4; i < 22 && fields >> field; ++i) {
  }
  fields >> *start_time;  // field 22
  return static_cast<bool>(fields);
}

}  // namespace

std::string host_identity() {
  return fmt::format("{}|{}|pid:{}|mnt:{}", host_name(), kernel_boot_id(),
                     inode_of("/proc/self/ns/pid"), inode_of("/proc/self/ns/mnt"));
}

std::string host_name() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

std::string kernel_boot_id() { return first_line("/proc/sys/kernel/random/boot_id"); }

unsigned long long process_start_time(int pid) {
  char state = 0;
  unsigned long long start = 0;
  return read_stat(pid, &state, &start) ? start : 0;
}

bool process_alive(int pid, unsigned long long start_time) {
  char state = 0;
  unsigned long long start = 0;
  if (!read_stat(pid, &state, &start)) return false;
  if (state == 'Z' || state == 'X') return false;
  return start == start_time;
}

}  // namespace ds::comm
