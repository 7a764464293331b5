// Training tokens: one stream of int32 token ids, read from plain text (each byte is a
// token, vocabulary 256, or through a tokenizer.json), from JSON-lines documents
// (documents.h: fields, templates, the cache) or from llm.c token shards.
//
// llm.c shard (llmc/dataloader.h, dev/data/data_common.py): a 1024-byte header of 256
// little-endian int32, header[0] = magic, header[1] = version, header[2] = token count,
// then the tokens: magic 20240520 with version 1 holds uint16 tokens, magic 20240801 with
// version 7 holds uint32 tokens. The file size must be exactly 1024 + count * token bytes.
//
// A path may be a glob(3) pattern; the files it matches are sorted by name (bytewise)
// and concatenated into one stream. Format "auto" reads a pattern ending in ".bin" as
// shards, one ending in ".jsonl" as JSON lines and anything else as text; "text", "bin"
// and "jsonl" force one. Every problem with the
// input is a ds::UsageError (exit code 2) whose message names the file and what is wrong.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/train_config.h"
#include "data/sampler.h"

namespace ds::data {

enum class TokenFormat { kAuto, kText, kBin, kJsonl };

// "auto", "text", "bin" or "jsonl"; anything else is a UsageError.
TokenFormat parse_token_format(std::string_view name);

inline constexpr int32_t kShardMagicU16 = 20240520;
inline constexpr int32_t kShardVersionU16 = 1;
inline constexpr int32_t kShardMagicU32 = 20240801;
inline constexpr int32_t kShardVersionU32 = 7;
inline constexpr int64_t kShardHeaderBytes = 1024;

struct TokenStream {
  std::vector<int32_t> tokens;
  std::vector<std::string> files;  // the files read, in stream order
  std::string source;              // the path or pattern as given, for messages
  // One past the last token of each document (text: each file is one document).
  std::vector<int64_t> document_ends;
  // mask_prompt: one flag per token, 1 = never a target (sampler.h's M); else empty.
  std::vector<uint8_t> ignored;
  // packing: false: the unpacked samples (sampler.h); else empty.
  std::vector<SampleSpan> samples;
  int32_t pad_id = 0;  // the tokenizer's EOS

  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  int64_t documents() const { return static_cast<int64_t>(document_ends.size()); }
  // What a sampler reads; valid while this stream lives and is not changed.
  SampleSource view() const { return {tokens, ignored, samples, pad_id}; }
};

// Reads every file `path_or_glob` names into one stream. Every token id must be below
// vocab_size; the stream must hold at least min_tokens tokens (seq_len + 1 for a sample).
TokenStream load_tokens(const std::string& path_or_glob, TokenFormat format, int64_t vocab_size,
                        int64_t min_tokens);

// The train and validation streams of a run.
//
// With data.val set, both are loaded as above. With data.val empty, the train stream of
// L tokens is split: n_val = floor(L * val_fraction) tokens, the *last* n_val tokens
// [L - n_val, L) form the validation stream and the first L - n_val tokens [0, L - n_val)
// the train stream (the two never overlap). val_fraction = 0 leaves no validation stream
// (val.tokens empty). JSON-lines data are split by documents instead: of D documents the
// last floor(D * val_fraction) (at least one) are the validation stream.
//
// Documents (jsonl, or text through a tokenizer) are BOS + prompt + response + EOS
// (documents.h). With mask_prompt, the BOS and prompt tokens are flagged as never being
// targets. With packing (the default) the documents are one stream read in windows; each
// stream that exists must hold at least seq_len + 1 tokens. Without packing each document
// of n tokens starting at stream offset b gives the spans c = 0, 1, ... while
// c*T + 1 < n: start b + c*T, length min(T + 1, n - c*T) — a document longer than T + 1
// tokens continues in further samples, which overlap by one token as packed windows do,
// and the last one is padded. Spans with no target left after masking are dropped; each
// stream must yield at least one.
struct Datasets {
  TokenStream train;
  TokenStream val;
  bool val_split_from_train = false;
  std::string tokenizer = "bytes";  // DataTokenizer::describe()
  int64_t files_tokenised = 0;      // data files tokenised now
  int64_t files_from_cache = 0;     // data files read from their token cache
};

Datasets load_datasets(const config::DataConfig& data, int64_t vocab_size, int64_t seq_len);

}  // namespace ds::data
