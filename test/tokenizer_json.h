// Pieces of Hugging Face tokenizer.json files for tests: the byte-level alphabet, the
// 256 byte tokens, added tokens, the GPT-2 and Llama 3 pre-tokenizers and their decoder.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace ds::testing {

// Raw bytes → the byte-level alphabet vocabularies are written in (" the" → "Ġthe").
inline std::string byte_level(std::string_view raw) {
  std::string out;
  for (char c : raw) out += tokenizer::byte_to_unicode(static_cast<uint8_t>(c));
  return out;
}

// The 256 byte tokens (id = byte value), then `extra` tokens from 256 on.
inline nlohmann::json byte_vocab(const std::vector<std::string>& extra = {}) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level(std::string(1, static_cast<char>(b)))] = b;
  int id = 256;
  for (const auto& t : extra) vocab[t] = id++;
  return vocab;
}

inline nlohmann::json added_token(const std::string& content, int id, bool special,
                                  bool normalized = false, bool lstrip = false, bool rstrip = false,
                                  bool single_word = false) {
  return {{"id", id},          {"content", content}, {"single_word", single_word},
          {"lstrip", lstrip},  {"rstrip", rstrip},   {"normalized", normalized},
          {"special", special}};
}

// GPT-2's: ByteLevel with its own regex.
// The ByteLevel decoder as GPT-2's and Llama 3's files write it.
inline nlohmann::json byte_level_decoder() {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", true},
          {"trim_offsets", true},
          {"use_regex", true}};
}

inline nlohmann::json gpt2_pre_tokenizer() {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", true},
          {"use_regex", true}};
}

// Llama 3's: Split on its pattern, then ByteLevel without a regex.
inline nlohmann::json llama3_pre_tokenizer() {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern", {{"Regex", std::string(tokenizer::kLlama3Pattern)}}},
             {"behavior", "Isolated"},
             {"invert", false}},
            {{"type", "ByteLevel"},
             {"add_prefix_space", false},
             {"trim_offsets", true},
             {"use_regex", false}}}}};
}

}  // namespace ds::testing
