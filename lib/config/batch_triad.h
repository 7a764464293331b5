// DeepSpeed's batch triad: train_batch_size = micro_batch * grad_accum * dp_size.
// A pure function, tested on its own; the config parser attaches file positions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ds::config {

struct TriadInput {
  std::optional<int64_t> train_batch_size;
  std::optional<int64_t> micro_batch_per_gpu;
  std::optional<int64_t> gradient_accumulation_steps;
  int64_t dp_size = 1;
};

struct TriadResult {
  int64_t train_batch_size = 0;
  int64_t micro_batch_per_gpu = 0;
  int64_t gradient_accumulation_steps = 0;
  std::string error;          // empty when the triad is consistent
  std::string offending_key;  // the key the error is about
};

// Fills the missing values the way DeepSpeed's _set_batch_related_parameters does,
// except that a value which does not divide is an error (DeepSpeed floors it and
// then fails its own check with less helpful numbers; both are reported).
TriadResult resolve_batch_triad(const TriadInput& in);

}  // namespace ds::config
