#include "tokenizer/unicode_class.h"

#include <algorithm>
#include <array>

namespace ds::tokenizer {
namespace {

struct UnicodeRange {
  char32_t first;
  char32_t last;
  uint8_t bits;  // bits 0-1: CharClass; bit 2: word character
};
constexpr uint8_t kWordBit = 4;

#include "tokenizer/unicode_table.inc"

uint8_t lookup_ranges(char32_t cp) {
  const auto* end = std::end(kUnicodeRanges);
  const auto* it = std::upper_bound(std::begin(kUnicodeRanges), end, cp,
                                    [](char32_t c, const UnicodeRange& r) { return c < r.first; });
  if (it == std::begin(kUnicodeRanges)) return 0;
  --it;
  return cp <= it->last ? it->bits : 0;
}

// The Basic Multilingual Plane, where nearly all text lives, as a direct table; the
// rest goes through a binary search over the ranges.
const std::array<uint8_t, 0x10000>& bmp_table() {
  static const auto table = [] {
    std::array<uint8_t, 0x10000> t{};
    for (const UnicodeRange& r : kUnicodeRanges) {
      for (char32_t c = r.first; c <= r.last && c < 0x10000; ++c) t[c] = r.bits;
    }
    return t;
  }();
  return table;
}

uint8_t bits_of(char32_t cp) {
  if (cp < 0x10000) return bmp_table()[cp];
  if (cp == kInvalidCodePoint) return 0;
  return lookup_ranges(cp);
}

}  // namespace

CharClass char_class(char32_t cp) { return static_cast<CharClass>(bits_of(cp) & 3); }

bool is_word_char(char32_t cp) { return (bits_of(cp) & kWordBit) != 0; }

const char* unicode_version() { return kUnicodeVersion; }

}  // namespace ds::tokenizer
