// Text → token documents: the tokenizer the data use, JSON-lines records rendered through
// data.field or data.template, and the on-disk cache of the result.
//
// A document is BOS (when the tokenizer has one) + prompt tokens + response tokens + EOS.
// The prompt part (BOS included) is what mask_prompt keeps out of the loss. The prompt
// and the response are encoded separately, so the boundary between them is exact.
//
// Cache: the tokenised documents of data file F are kept in F.<16 hex digits>.tokens
// beside it. The digits are a 64-bit FNV-1a hash over F's size, modification time and
// contents, the tokenizer files' contents and the options that shape the documents
// (format, field, template), so any change picks a new name and the old file is simply
// not read again. A cache file that is unreadable or inconsistent is rebuilt; one that
// cannot be written is a warning.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/train_config.h"

namespace ds::tokenizer {
class BpeTokenizer;
}

namespace ds::data {

// With the byte tokenizer (each byte a token) there is no BOS and EOS is byte 0 (NUL),
// which text does not contain.
inline constexpr int32_t kByteEos = 0;

// Bytes, or a Hugging Face tokenizer.json.
class DataTokenizer {
 public:
  static DataTokenizer bytes();
  // Throws UsageError naming the file when it is not a valid tokenizer or has no EOS.
  static DataTokenizer load(const std::string& tokenizer_json);

  DataTokenizer(DataTokenizer&&) noexcept;
  DataTokenizer& operator=(DataTokenizer&&) noexcept;
  ~DataTokenizer();

  bool is_bytes() const { return bpe_ == nullptr; }
  void encode_append(std::string_view text, std::vector<int32_t>& out) const;
  std::optional<int32_t> bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t vocab_size() const { return vocab_size_; }
  const std::string& path() const { return path_; }  // "" for bytes
  // Hash of what decides the ids: tokenizer.json and tokenizer_config.json beside it.
  uint64_t fingerprint() const { return fingerprint_; }
  std::string describe() const;

 private:
  DataTokenizer() = default;
  std::unique_ptr<tokenizer::BpeTokenizer> bpe_;
  std::optional<int32_t> bos_;
  int32_t eos_ = kByteEos;
  int32_t vocab_size_ = 256;
  std::string path_;
  uint64_t fingerprint_ = 0;
};

// The documents of one file, back to back.
struct Documents {
  std::vector<int32_t> tokens;
  std::vector<int64_t> ends;          // ends[d]: one past document d's last token
  std::vector<int64_t> prompt_sizes;  // tokens at the start of document d that are prompt
  std::vector<int64_t> lines;         // the line each document came from (1-based; 0: whole file)
  bool from_cache = false;

  int64_t count() const { return static_cast<int64_t>(ends.size()); }
  int64_t begin_of(int64_t d) const { return d == 0 ? 0 : ends[static_cast<size_t>(d - 1)]; }
};

// The text of `record` (one JSON-lines line, 1-based line number `line`) that `t`
// produces; errors name file and line. Exposed for tests.
std::string render_template(const std::vector<config::TextTemplate>& alternatives,
                            const std::string& record_json, const std::string& file, int64_t line);

// Where the cache of `file` would be for these options.
std::string cache_path(const std::string& file, const config::DataConfig& data,
                       const DataTokenizer& tok);

// Tokenises `file` (jsonl: one document per non-blank line; text: the whole file is one
// document), or reads it from its cache when data.cache is on and the cache is valid.
// Every token is checked against vocab_size.
Documents tokenize_file(const std::string& file, bool jsonl, const config::DataConfig& data,
                        const DataTokenizer& tok, int64_t vocab_size);

}  // namespace ds::data
