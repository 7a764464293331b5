// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json — the GPT-2 and
// Llama 3 styles — encoding and decoding exactly as the `tokenizers` library does
// (docs/tokenizer.md lists what is supported and where it differs).
//
//   auto tok = ds::tokenizer::BpeTokenizer::load("tokenizer.json");
//   std::vector<int32_t> ids = tok.encode("Hello world");   // no BOS/EOS added
//   std::string text = tok.decode(ids);
//
// encode() runs: added tokens split out (non-normalized ones first, then normalized ones,
// leftmost-longest, honouring single_word/lstrip/rstrip) → the pre-tokenizer (ByteLevel
// with the GPT-2 regex, or a Sequence of Split with the Llama 3 regex and ByteLevel) →
// BPE on each piece's bytes. The post-processor is not applied: a data loader adds
// bos_id()/eos_id() itself where the model wants them.
//
// A BpeTokenizer is immutable after load and safe to use from several threads; the
// piece cache it keeps inside is guarded by a mutex.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pre_tokenizer.h"

namespace ds::tokenizer {

// One entry of tokenizer.json's "added_tokens", with the id `tokenizers` gives it.
struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class BpeTokenizer {
 public:
  // Reads a tokenizer.json. BOS/EOS come from a tokenizer_config.json beside it when there
  // is one ("bos_token"/"eos_token"), else from the TemplateProcessing post-processor
  // (the special token before/after $A), else from well-known names. Throws
  // ds::UsageError naming the file and the problem for anything it cannot honour exactly.
  static BpeTokenizer load(const std::filesystem::path& tokenizer_json);
  // The same from JSON text; `source` names it in error messages.
  static BpeTokenizer from_json(std::string_view json, const std::string& source);

  BpeTokenizer(BpeTokenizer&&) noexcept;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
  ~BpeTokenizer();

  // Token ids of `text` (UTF-8). Bytes that are not well-formed UTF-8 are encoded as
  // single bytes (the Python library cannot be given such text at all).
  std::vector<int32_t> encode(std::string_view text) const;
  // Appends to `out` instead; the data loader's form.
  void encode_append(std::string_view text, std::vector<int32_t>& out) const;

  // Text of `ids`: added tokens by content, model tokens through the ByteLevel decoder,
  // then invalid UTF-8 replaced by U+FFFD as Rust's from_utf8_lossy does. Unknown ids
  // are skipped (as in `tokenizers`); with skip_special, so are special added tokens.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // Rows an embedding needs: the largest id (model or added) + 1.
  int32_t vocab_size() const;
  // Id of a token as written in tokenizer.json (added tokens first, then the model's
  // vocab, whose entries are in the byte-to-unicode alphabet, e.g. "Ġthe").
  std::optional<int32_t> token_id(std::string_view token) const;
  // The token string of an id (added content, or the model's vocab entry).
  std::optional<std::string_view> id_to_token(int32_t id) const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  const std::vector<AddedToken>& added_tokens() const;

  // The pre-tokenizer's pieces of `text` (raw bytes, before the byte-to-unicode
  // mapping), for tests and debugging; added tokens are not split out here.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

 private:
  struct Impl;
  explicit BpeTokenizer(std::unique_ptr<Impl> impl);
  static std::unique_ptr<Impl> parse(std::string_view json, const std::string& source,
                                     const std::filesystem::path* config);

  std::unique_ptr<Impl> impl_;
};

// The GPT-2 byte-to-unicode table: the character (as UTF-8) that stands for byte b in
// byte-level vocabularies, e.g. byte ' ' → "Ġ" (U+0120).
std::string_view byte_to_unicode(uint8_t b);

}  // namespace ds::tokenizer
