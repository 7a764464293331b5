// TokenBuckets' grouping of a micro-batch's positions by token (tensor/cuda/kernels.h) in host
// vectors, for the embedding-gradient kernels in the emulated tests, which have no CUDA runtime
// for the real one.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/token_grouping.h"

struct EmulatedTokenBuckets {
  std::vector<int32_t> tokens;     // the distinct tokens, ascending
  std::vector<int32_t> offsets;    // token u owns positions[offsets[u], offsets[u + 1])
  std::vector<int32_t> positions;  // ascending within a token

  explicit EmulatedTokenBuckets(const std::vector<int32_t>& ids)
      : tokens(ids.size()), offsets(ids.size() + 1), positions(ids.size()) {
    const int distinct =
        ds::tensor::group_positions_by_token(ids.data(), static_cast<int64_t>(ids.size()),
                                             tokens.data(), offsets.data(), positions.data());
    tokens.resize(static_cast<size_t>(distinct));
    offsets.resize(static_cast<size_t>(distinct) + 1);
  }
};
