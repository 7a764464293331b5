#include "comm/store.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ds::comm {

StoreTimeout::StoreTimeout(std::vector<std::string> missing_keys, Milliseconds timeout)
    : Error(fmt::format("timed out after {} waiting for store keys {}", format_duration(timeout),
                        fmt::join(missing_keys, ", ")),
            "another rank did not publish them in time; check that every rank started and look "
            "at the first failing rank's log"),
      missing_keys_(std::move(missing_keys)),
      timeout_(timeout) {}

std::string format_duration(Milliseconds duration) {
  const auto ms = duration.count();
  if (ms < 1000) return fmt::format("{} ms", ms);
  if (ms % 1000 == 0) return fmt::format("{} s", ms / 1000);
  return fmt::format("{:.1f} s", static_cast<double>(ms) / 1000.0);
}

}  // namespace ds::comm
