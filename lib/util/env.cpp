#include "util/env.h"

#include <cstdlib>

#include "util/log.h"

namespace ds {

bool env_switch(const char* name, std::string_view when_on) {
  const char* value = std::getenv(name);
  if (value == nullptr || std::string_view(value) == "1") return true;
  if (std::string_view(value) == "0") return false;
  log::warn("{}={} is neither 0 nor 1: {}, as when unset", name, value, when_on);
  return true;
}

}  // namespace ds
