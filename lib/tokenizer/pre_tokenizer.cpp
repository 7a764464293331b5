#include "tokenizer/pre_tokenizer.h"

#include "tokenizer/unicode_class.h"

namespace ds::tokenizer {
namespace {

// ASCII answers without a table look-up; everything else goes through unicode_class.
inline CharClass class_at(std::string_view s, size_t i, uint32_t* len) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) {
    *len = 1;
    if ((b | 0x20) >= 'a' && (b | 0x20) <= 'z') return CharClass::kLetter;
    if (b >= '0' && b <= '9') return CharClass::kNumber;
    if (b == ' ' || (b >= '\t' && b <= '\r')) return CharClass::kSpace;
    // U+001C..U+001F are not White_Space; U+0085 is, but it is not ASCII.
    return CharClass::kOther;
  }
  Utf8Char c = decode_utf8(s, i);
  *len = c.len;
  return c.cp == kInvalidCodePoint ? CharClass::kOther : char_class(c.cp);
}

// End of the run of characters of class cls that starts at i (i may already be past it).
size_t run_of(std::string_view s, size_t i, CharClass cls) {
  uint32_t len = 0;
  while (i < s.size() && class_at(s, i, &len) == cls) i += len;
  return i;
}

// The white-space alternatives shared by both patterns, for a white-space character at i:
// \s+(?!\S) — the run, less its last character when a non-space follows — else \s+.
size_t match_space_run(std::string_view s, size_t i) {
  size_t last = i, j = i;
  uint32_t len = 0;
  while (j < s.size() && class_at(s, j, &len) == CharClass::kSpace) {
    last = j;
    j += len;
  }
  if (j == s.size() || last == i) return j;
  return last;
}

bool is_ascii_ci(std::string_view s, size_t i, char lower) {
  return i < s.size() && (s[i] == lower || s[i] == lower - ('a' - 'A'));
}

// 's 't 're 've 'm 'll 'd after the apostrophe at i; returns the match end or 0.
// Case-insensitively, Unicode simple case folding also lets U+017F (long s) match "s".
size_t match_contraction(std::string_view s, size_t i, bool ignore_case) {
  size_t k = i + 1;
  if (k >= s.size()) return 0;
  auto is = [&](size_t at, char c) {
    if (at >= s.size()) return false;
    return ignore_case ? is_ascii_ci(s, at, c) : s[at] == c;
  };
  if (is(k, 's') || is(k, 't') || is(k, 'm') || is(k, 'd')) return k + 1;
  if ((is(k, 'r') || is(k, 'v')) && is(k + 1, 'e')) return k + 2;
  if (is(k, 'l') && is(k + 1, 'l')) return k + 2;
  if (ignore_case && s.substr(k, 2) == "\xC5\xBF") return k + 2;  // U+017F
  return 0;
}

}  // namespace

size_t match_gpt2(std::string_view s, size_t i) {
  if (s[i] == '\'') {
    if (size_t e = match_contraction(s, i, false)) return e;
  }
  uint32_t len = 0;
  CharClass c = class_at(s, i, &len);
  if (s[i] == ' ' && i + 1 < s.size()) {  // " ?" before a letter, number or other run
    uint32_t len2 = 0;
    CharClass next = class_at(s, i + 1, &len2);
    if (next != CharClass::kSpace) return run_of(s, i + 1 + len2, next);
  }
  if (c != CharClass::kSpace) return run_of(s, i + len, c);
  return match_space_run(s, i);
}

size_t match_llama3(std::string_view s, size_t i) {
  if (s[i] == '\'') {
    if (size_t e = match_contraction(s, i, true)) return e;
  }
  uint32_t len = 0;
  CharClass c = class_at(s, i, &len);
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c == CharClass::kLetter) return run_of(s, i + len, CharClass::kLetter);
  if (c != CharClass::kNumber && s[i] != '\r' && s[i] != '\n' && i + len < s.size()) {
    uint32_t len2 = 0;
    if (class_at(s, i + len, &len2) == CharClass::kLetter) {
      return run_of(s, i + len + len2, CharClass::kLetter);
    }
  }
  // \p{N}{1,3}
  if (c == CharClass::kNumber) {
    size_t j = i + len;
    for (int n = 1; n < 3 && j < s.size() && class_at(s, j, &len) == CharClass::kNumber; ++n) {
      j += len;
    }
    return j;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  size_t other_start = std::string_view::npos;
  if (c == CharClass::kOther) {
    other_start = i;
  } else if (s[i] == ' ' && i + 1 < s.size() && class_at(s, i + 1, &len) == CharClass::kOther) {
    other_start = i + 1;
  }
  if (other_start != std::string_view::npos) {
    size_t j = run_of(s, other_start, CharClass::kOther);
    while (j < s.size() && (s[j] == '\r' || s[j] == '\n')) ++j;
    return j;
  }
  // \s*[\r\n]+ : the white-space run up to and including its last \r or \n.
  size_t j = run_of(s, i, CharClass::kSpace);
  for (size_t k = j; k > i; --k) {
    if (s[k - 1] == '\r' || s[k - 1] == '\n') return k;
  }
  return match_space_run(s, i);
}

void split(SplitPattern pattern, std::string_view s, PieceSink emit) {
  size_t i = 0;
  while (i < s.size()) {
    size_t end = pattern == SplitPattern::kGpt2 ? match_gpt2(s, i) : match_llama3(s, i);
    emit(s.substr(i, end - i));
    i = end;
  }
}

}  // namespace ds::tokenizer
