// The two pre-tokenizer regexes of byte-level BPE tokenizers, as hand-written scanners
// with the exact semantics of a backtracking engine (Oniguruma, which Hugging Face
// tokenizers uses) running find_iter over the text:
//
//   GPT-2 (ByteLevel with use_regex):
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama 3 (Split, behavior Isolated):
//     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//     ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// Both patterns match every character, so a match always starts where the previous one
// ended and the pieces cover the text; each scanner returns where the match that starts
// at byte i ends.
#pragma once

#include <cstddef>
#include <string_view>
#include <type_traits>

namespace ds::tokenizer {

enum class SplitPattern { kGpt2, kLlama3 };

// The patterns exactly as they appear in tokenizer.json files.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// End (exclusive) of the match that starts at byte i < s.size().
size_t match_gpt2(std::string_view s, size_t i);
size_t match_llama3(std::string_view s, size_t i);

// A non-owning reference to a callable taking each piece; no allocation per call.
class PieceSink {
 public:
  template <class F>
  requires(!std::is_same_v<std::remove_cv_t<F>, PieceSink>)
      PieceSink(F& f)  // NOLINT(google-explicit-constructor): used like a function_ref
      : obj_(&f), call_([](void* o, std::string_view p) { (*static_cast<F*>(o))(p); }) {}
  void operator()(std::string_view piece) const { call_(obj_, piece); }

 private:
  void* obj_;
  void (*call_)(void*, std::string_view);
};

// Splits s into the pattern's matches (never empty) and hands each to emit, in order.
void split(SplitPattern pattern, std::string_view s, PieceSink emit);

}  // namespace ds::tokenizer
