// Unicode character classes for the pre-tokenizer scanners: \p{L}, \p{N} and \s as
// Oniguruma (the regex engine of Hugging Face tokenizers) defines them — General_Category
// L*, General_Category N* and the White_Space property — plus \w as Rust's regex crate
// defines it (added tokens' single_word). The data is the Unicode Character Database that
// Debian installs under /usr/share/unicode, turned into a range table at build time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ds::tokenizer {

// The classes are disjoint in Unicode, so one value per code point.
enum class CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

CharClass char_class(char32_t cp);
// \w of Rust's regex crate: Alphabetic, M*, Nd, Pc, Join_Control.
bool is_word_char(char32_t cp);
// The Unicode version of the data the table was built from, e.g. "15.0.0".
const char* unicode_version();

// One character of a UTF-8 string. Bytes that do not start a well-formed UTF-8 sequence
// are taken one at a time as a "character" of class kOther (cp = kInvalidCodePoint).
inline constexpr char32_t kInvalidCodePoint = 0xFFFFFFFF;
struct Utf8Char {
  char32_t cp;
  uint32_t len;  // bytes, 1-4
};

inline Utf8Char decode_utf8(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  size_t left = s.size() - i;
  unsigned char b0 = p[0];
  if (b0 < 0x80) return {b0, 1};
  auto cont = [&](size_t k) { return k < left && (p[k] & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF && cont(1)) return {char32_t((b0 & 0x1F) << 6 | (p[1] & 0x3F)), 2};
  if (b0 >= 0xE0 && b0 <= 0xEF && cont(1) && cont(2)) {
    char32_t cp = (b0 & 0x0F) << 12 | (p[1] & 0x3F) << 6 | (p[2] & 0x3F);
    if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) return {cp, 3};
  } else if (b0 >= 0xF0 && b0 <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    char32_t cp = (b0 & 0x07) << 18 | (p[1] & 0x3F) << 12 | (p[2] & 0x3F) << 6 | (p[3] & 0x3F);
    if (cp >= 0x10000 && cp <= 0x10FFFF) return {cp, 4};
  }
  return {kInvalidCodePoint, 1};
}

// The character that ends just before byte i (i > 0).
inline Utf8Char decode_utf8_before(std::string_view s, size_t i) {
  size_t start = i - 1;
  while (start > 0 && i - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80)
    --start;
  Utf8Char c = decode_utf8(s, start);
  if (start + c.len == i) return c;
  return {kInvalidCodePoint, 1};
}

}  // namespace ds::tokenizer
