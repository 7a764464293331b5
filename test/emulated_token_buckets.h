// TokenBuckets' grouping of a micro-batch's positions by token (tensor/cuda/kernels.h), built on
// the host for the embedding-gradient kernels in the emulated tests, which have no CUDA runtime to
// build the real one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

struct EmulatedTokenBuckets {
  std::vector<int32_t> tokens;     // the distinct tokens, ascending
  std::vector<int32_t> offsets;    // token u owns positions[offsets[u], offsets[u + 1])
  std::vector<int32_t> positions;  // ascending within a token

  explicit EmulatedTokenBuckets(const std::vector<int32_t>& ids) {
    positions.resize(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) positions[i] = static_cast<int32_t>(i);
    std::stable_sort(positions.begin(), positions.end(),
                     [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
    for (size_t i = 0; i < positions.size(); ++i) {
      if (i == 0 || ids[positions[i]] != ids[positions[i - 1]]) {
        tokens.push_back(ids[positions[i]]);
        offsets.push_back(static_cast<int32_t>(i));
      }
    }
    offsets.push_back(static_cast<int32_t>(positions.size()));
  }
};
