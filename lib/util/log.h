// Leveled logging to stderr, prefixed with the program (and rank, once known).
#pragma once

#include <fmt/format.h>

#include <string>

namespace ds::log {

enum class Level { kDebug, kInfo, kWarn, kError };

void set_level(Level level);
Level level();
// Prefix for every line, e.g. "dsworker" or "[rank 3]".
void set_prefix(std::string prefix);
void write(Level level, const std::string& message);

template <typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
  if (level() <= Level::kInfo)
    write(Level::kInfo, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) {
  if (level() <= Level::kWarn)
    write(Level::kWarn, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> format, Args&&... args) {
  if (level() <= Level::kDebug) {
    write(Level::kDebug, fmt::format(format, std::forward<Args>(args)...));
  }
}

}  // namespace ds::log
