#include "util/log.h"

#include <cstdio>
#include <mutex>

namespace ds::log {
namespace {
Level g_level = Level::kInfo;
std::string g_prefix = "dstrain";
std::mutex g_mutex;

const char* level_name(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warning";
    case Level::kError:
      return "error";
  }
  return "";
}
}  // namespace

void set_level(Level level) { g_level = level; }
Level level() { return g_level; }
void set_prefix(std::string prefix) { g_prefix = std::move(prefix); }

void write(Level level, const std::string& message) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (level == Level::kInfo) {
    fmt::print(stderr, "{}: {}\n", g_prefix, message);
  } else {
    fmt::print(stderr, "{}: {}: {}\n", g_prefix, level_name(level), message);
  }
}

}  // namespace ds::log
