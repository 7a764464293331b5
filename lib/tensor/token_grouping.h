// The host side of the GPU embedding backward's token buckets (tensor/cuda/kernels.h), kept out
// of the CUDA library (and header-only, which both libraries can use) so that it builds, and is
// tested, without the toolkit.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

namespace ds::tensor {

// Groups positions [0, n) by tokens[position] into `distinct_tokens` (the distinct tokens,
// ascending), `offsets` (distinct + 1 entries: token u owns positions[offsets[u], offsets[u + 1]))
// and `positions` (ascending within a token), the order in which the CPU's loop adds a token's
// positions. Returns the number of distinct tokens (0 for n <= 0). Each output has room for n
// (offsets: n + 1) entries, and none overlaps `tokens` (distinct_tokens is scratch until the end).
inline int group_positions_by_token(const int32_t* tokens, int64_t n, int32_t* distinct_tokens,
                                    int32_t* offsets, int32_t* positions) {
  // Positions by token, ascending within a token: a stable radix sort of the positions on their
  // tokens, least significant digit first, 11 bits a pass, skipping a pass whose digit is the
  // same for every token (GPT-2's 50257 tokens take two). It is linear in n: a comparison sort
  // took 1 ms at 16K tokens and 5 ms at llm.c's 64K, host time that the GPU can end up waiting
  // for in the embedding's backward. distinct_tokens is the second buffer until it is written.
  constexpr int kDigitBits = 11;
  constexpr uint32_t kDigits = 1u << kDigitBits;
  // Flipping the sign bit orders int32_t tokens as unsigned integers, as `<` orders them.
  const auto key = [tokens](int32_t position) {
    return static_cast<uint32_t>(tokens[position]) ^ 0x80000000u;
  };
  if (n <= 0) {
    offsets[0] = 0;
    return 0;
  }
  for (int64_t i = 0; i < n; ++i) positions[i] = static_cast<int32_t>(i);
  int32_t* from = positions;
  int32_t* to = distinct_tokens;
  for (int shift = 0; shift < 32; shift += kDigitBits) {
    std::array<int64_t, kDigits> start{};
    for (int64_t i = 0; i < n; ++i) ++start[(key(from[i]) >> shift) & (kDigits - 1)];
    if (std::find(start.begin(), start.end(), n) != start.end()) continue;  // one digit for all
    int64_t sum = 0;
    for (int64_t& s : start) sum += std::exchange(s, sum);
    for (int64_t i = 0; i < n; ++i) to[start[(key(from[i]) >> shift) & (kDigits - 1)]++] = from[i];
    std::swap(from, to);
  }
  if (from != positions) std::copy(from, from + n, positions);
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
