// The host side of the GPU embedding backward's token buckets (tensor/cuda/kernels.h), kept out
// of the CUDA library (and header-only, which both libraries can use) so that it builds, and is
// tested, without the toolkit.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ds::tensor {

// Groups positions [0, n) by tokens[position] into `distinct_tokens` (the distinct tokens,
// ascending), `offsets` (distinct + 1 entries: token u owns positions[offsets[u], offsets[u + 1]))
// and `positions` (ascending within a token), the order in which the CPU's loop adds a token's
// positions. Returns the number of distinct tokens. Each output has room for n (offsets: n + 1)
// entries.
inline int group_positions_by_token(const int32_t* tokens, int64_t n, int32_t* distinct_tokens,
                                    int32_t* offsets, int32_t* positions) {
  // Positions by token, ascending within a token (a stable sort by token).
  for (int64_t i = 0; i < n; ++i) positions[i] = static_cast<int32_t>(i);
  std::stable_sort(positions, positions + n,
                   [&](int32_t a, int32_t b) { return tokens[a] < tokens[b]; });
  int distinct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t token = tokens[positions[i]];
    if (i == 0 || token != tokens[positions[i - 1]]) {
      distinct_tokens[distinct] = token;
      offsets[distinct++] = static_cast<int32_t>(i);
    }
  }
  offsets[distinct] = static_cast<int32_t>(n);
  return distinct;
}

}  // namespace ds::tensor
