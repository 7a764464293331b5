// `dsworker sample`: text from trained weights.
//
// Generation is the plain autoregressive loop: run the model's forward over the
// last block_size tokens (with dummy targets: the head computes a loss nobody
// reads), take the head's probabilities at the last position, and draw the next
// token. Temperature divides the log-probabilities (0 picks the most likely token),
// top_k keeps the k most likely, and the draw uses splitmix64 (not <random>'s
// distributions, whose results differ between standard libraries), so a seed gives
// the same text everywhere.
//
// Tokens are bytes unless a tokenizer file is given: a Hugging Face tokenizer.json
// (byte-level BPE, lib/tokenizer: encodes the prompt and decodes exactly), or llm.c's
// GPT-2 tokenizer table
// (gpt2_tokenizer.bin; a header of 256 uint32 — magic 20240328, version 1 or 2,
// vocab size, and in version 2 the <|endoftext|> id — then per token a uint8 length
// and its bytes). That table only decodes; the prompt is encoded by greedy longest
// match over it, which gives valid tokens but not always GPT-2's own (regex + BPE
// merges) split of the text.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/sampler.h"
#include "model/gpt.h"
#include "tokenizer/bpe_tokenizer.h"

namespace ds::worker {

class Tokenizer {
 public:
  // Every byte its own token (vocab 256), as text data is read for training.
  static Tokenizer bytes();
  // A tokenizer.json (by its extension), else llm.c's tokenizer file; UsageError naming
  // the file when it is neither.
  static Tokenizer load(const std::filesystem::path& path);

  bool is_bytes() const { return table_.empty() && !bpe_; }
  int vocab_size() const;
  int eot() const { return eot_; }  // -1 for bytes
  // The text of a token sequence; control characters other than tab and newline print
  // as nothing (bytes and llm.c tables). A BPE sequence that ends inside a UTF-8
  // character ends in U+FFFD until its next token completes it.
  std::string decode(std::span<const int32_t> tokens) const;
  std::vector<int32_t> encode(std::string_view text) const;

 private:
  std::string decode_one(int32_t token) const;

  std::shared_ptr<const tokenizer::BpeTokenizer> bpe_;
  std::vector<std::string> table_;
  std::unordered_map<std::string, int32_t> ids_;
  size_t longest_ = 1;
  int eot_ = -1;
};

// A uniform draw in [0, 1) from the top 53 bits of the data sampler's splitmix64.
double uniform01(data::SplitMix64& rng);

// Draws a token from probabilities probs[0, vocab): only ids below `usable` (the
// tokenizer's vocabulary; models pad theirs) can come out. temperature 0: argmax.
// top_k 0: no cut. Ties keep the lower id.
int32_t sample_token(const float* probs, int vocab, int usable, double temperature, int64_t top_k,
                     data::SplitMix64& rng);

struct GenerateOptions {
  int64_t tokens = 200;
  double temperature = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 1234;
};

// Appends options.tokens tokens to `context` (at least one token) with full fp32
// parameters `params` (model.layout()); calls on_token with each as it comes.
std::vector<int32_t> generate(model::Gpt& model, const float* params, std::vector<int32_t> context,
                              int usable_vocab, const GenerateOptions& options,
                              const std::function<void(int32_t)>& on_token = {});

// The prompt as tokens, checked against the model; an empty prompt starts from
// <|endoftext|> (GPT-2) or a newline (bytes).
std::vector<int32_t> prompt_tokens(const Tokenizer& tokenizer, std::string_view prompt,
                                   int64_t model_vocab);

// Prompt + generated text, decoded.
std::string generate_text(model::Gpt& model, const float* params, const Tokenizer& tokenizer,
                          std::string_view prompt, const GenerateOptions& options);

struct SampleOptions {
  std::string config;     // a train.cfg: its model section describes the weights
  std::string model;      // or a model: a preset, a model file, or an inline YAML map
  std::string weights;    // safetensors with Hugging Face GPT-2 names
  std::string tokenizer;  // llm.c tokenizer file; "" : bytes
  std::string prompt;
  GenerateOptions generate;
};

// Prints the prompt and the generated text to `out` as it is generated.
void sample_command(const SampleOptions& options, std::ostream& out);

}  // namespace ds::worker
