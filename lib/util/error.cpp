#include "util/error.h"

#include <cstdio>
#include <cstring>

namespace ds {

void fail_check(const char* file, int line, const char* condition, const std::string& message) {
  const char* base = std::strrchr(file, '/');
  throw Error(fmt::format("{} ({}:{}: check failed: {})", message, base ? base + 1 : file, line,
                          condition));
}

int report_error(const char* program, const Error& error) {
  std::fflush(stdout);
  fmt::print(stderr, "{}: error: {}\n", program, error.what());
  if (!error.hint().empty()) fmt::print(stderr, "  hint: {}\n", error.hint());
  return static_cast<int>(error.code());
}

}  // namespace ds
