// Parses configs held in strings, for the config tests.
#pragma once

#include <catch2/catch.hpp>
#include <string>

#include "config/ds_config.h"
#include "config/train_config.h"

namespace ds::config::testing {

inline DsConfig ds_from(const std::string& json, int64_t world_size = 1,
                        std::optional<int64_t> total_steps = std::nullopt) {
  const DocumentPtr doc = parse_document(json, "ds.json", "", /*json=*/true);
  MapReader root(doc, doc->root, "");
  RunContext context;
  context.world_size = world_size;
  context.total_steps = total_steps;
  return parse_ds_config(root, context);
}

inline TrainConfig train_from(const std::string& yaml, int64_t world_size = 1) {
  return parse_train_config(parse_document(yaml, "train.yaml", "", /*json=*/false), world_size);
}

struct Failure {
  std::string message;
  std::string hint;
  int exit_code = 0;
};

template <typename Fn>
Failure failure_of(Fn&& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return {e.what(), e.hint(), static_cast<int>(e.code())};
  }
  FAIL("expected a ConfigError, but the config was accepted");
  return {};
}

inline Failure ds_failure(const std::string& json, int64_t world_size = 1) {
  return failure_of([&] { ds_from(json, world_size, 100); });
}

inline Failure train_failure(const std::string& yaml, int64_t world_size = 1) {
  return failure_of([&] { train_from(yaml, world_size); });
}

}  // namespace ds::config::testing
