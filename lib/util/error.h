// One error type for the whole project. Libraries throw ds::Error; each main()
// catches it, prints "<program>: error: <what>" and "  hint: <hint>", and exits
// with the error's code (DESIGN.md: 1 a failure, 2 usage or config error).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace ds {

enum class ExitCode : int {
  kOk = 0,
  kFailure = 1,
  kUsage = 2,       // bad command line, config or input file
  kInterrupt = 130  // 128 + SIGINT
};

class Error : public std::runtime_error {
 public:
  explicit Error(std::string what, std::string hint = "", ExitCode code = ExitCode::kFailure)
      : std::runtime_error(std::move(what)), hint_(std::move(hint)), code_(code) {}

  const std::string& hint() const { return hint_; }
  ExitCode code() const { return code_; }

 private:
  std::string hint_;
  ExitCode code_;
};

// Bad input from the user (config, data file, command line): exit code 2.
class UsageError : public Error {
 public:
  explicit UsageError(std::string what, std::string hint = "")
      : Error(std::move(what), std::move(hint), ExitCode::kUsage) {}
};

// Throws ds::Error naming the source location; for internal invariants.
[[noreturn]] void fail_check(const char* file, int line, const char* condition,
                             const std::string& message);

// Prints the error the way every dstrain program does and returns its exit code.
int report_error(const char* program, const Error& error);

}  // namespace ds

#define DS_CHECK(condition, ...)                                                    \
  do {                                                                              \
    if (!(condition)) {                                                             \
      ::ds::fail_check(__FILE__, __LINE__, #condition, ::fmt::format(__VA_ARGS__)); \
    }                                                                               \
  } while (false)
