#include "worker/sample_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <ostream>

#include "checkpoint/weights_file.h"
#include "config/document.h"
#include "config/model_config.h"
#include "config/train_config.h"
#include "model/head_layer.h"
#include "util/error.h"
#include "util/log.h"

namespace ds::worker {
namespace {

constexpr uint32_t kTokenizerMagic = 20240328;

bool printable(unsigned char byte) {
  return byte >= 0x20 || byte == '\n' || byte == '\t';  // bytes >= 0x80 are UTF-8 pieces
}

}  // namespace

Tokenizer Tokenizer::bytes() { return Tokenizer(); }

int Tokenizer::vocab_size() const {
  if (bpe_) return bpe_->vocab_size();
  return is_bytes() ? 256 : static_cast<int>(table_.size());
}

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  if (path.extension() == ".json") {
    Tokenizer t;
    t.bpe_ = std::make_shared<const tokenizer::BpeTokenizer>(tokenizer::BpeTokenizer::load(path));
    t.eot_ = t.bpe_->eos_id().value_or(-1);
    return t;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw UsageError(fmt::format("cannot open the tokenizer file {}", path.string()),
                     "give llm.c's gpt2_tokenizer.bin (written by its train_gpt2.py)");
  }
  const auto bad = [&](const std::string& what) {
    return UsageError(fmt::format("{} is not an llm.c tokenizer file: {}", path.string(), what),
                      "give llm.c's gpt2_tokenizer.bin (written by its train_gpt2.py)");
  };
  uint32_t header[256];
  if (!in.read(reinterpret_cast<char*>(header), sizeof header))
    throw bad("shorter than its header");
  if (header[0] != kTokenizerMagic) {
    throw bad(fmt::format("magic {} instead of {}", header[0], kTokenizerMagic));
  }
  const uint32_t version = header[1];
  const uint32_t vocab = header[2];
  if (vocab == 0 || vocab > (1u << 24)) throw bad(fmt::format("vocabulary size {}", vocab));
  Tokenizer t;
  if (version == 1) {
    // Version 1 has no end-of-text id; llm.c then assumes GPT-2's.
    if (vocab != 50257) throw bad(fmt::format("version 1 with {} tokens instead of 50257", vocab));
    t.eot_ = 50256;
  } else if (version == 2) {
    if (header[3] >= vocab) throw bad(fmt::format("<|endoftext|> id {} >= {}", header[3], vocab));
    t.eot_ = static_cast<int>(header[3]);
  } else {
    throw bad(fmt::format("version {} (1 and 2 are known)", version));
  }
  t.table_.resize(vocab);
  for (uint32_t i = 0; i < vocab; ++i) {
    unsigned char length = 0;
    if (!in.read(reinterpret_cast<char*>(&length), 1) || length == 0) {
      throw bad(fmt::format("token {} of {} is missing or empty", i, vocab));
    }
    std::string& token = t.table_[i];
    token.resize(length);
    if (!in.read(token.data(), length)) throw bad(fmt::format("token {} is cut short", i));
    t.ids_.emplace(token, static_cast<int32_t>(i));  // the first id of a duplicate wins
    t.longest_ = std::max<size_t>(t.longest_, length);
  }
  return t;
}

std::string Tokenizer::decode(std::span<const int32_t> tokens) const {
  if (bpe_) return bpe_->decode(tokens);
  std::string text;
  for (int32_t token : tokens) text += decode_one(token);
  return text;
}

std::string Tokenizer::decode_one(int32_t token) const {
  if (is_bytes()) {
    if (token < 0 || token > 255) return "";
    const auto byte = static_cast<unsigned char>(token);
    return printable(byte) ? std::string(1, static_cast<char>(byte)) : "";
  }
  if (token < 0 || token >= vocab_size()) return "";
  const std::string& piece = table_[static_cast<size_t>(token)];
  if (piece.size() == 1 && !printable(static_cast<unsigned char>(piece[0]))) return "";
  return piece;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  if (bpe_) return bpe_->encode(text);
  std::vector<int32_t> tokens;
  if (is_bytes()) {
    for (char c : text) tokens.push_back(static_cast<unsigned char>(c));
    return tokens;
  }
  for (size_t at = 0; at < text.size();) {
    size_t length = std::min(longest_, text.size() - at);
    for (; length > 0; --length) {
      if (auto it = ids_.find(std::string(text.substr(at, length))); it != ids_.end()) {
        tokens.push_back(it->second);
        break;
      }
    }
    if (length == 0) {
      throw UsageError(
          fmt::format("the prompt's byte 0x{:02x} at offset {} is in no token of the "
                      "tokenizer",
                      static_cast<unsigned char>(text[at]), at));
    }
    at += length;
  }
  return tokens;
}

double uniform01(data::SplitMix64& rng) {
  return static_cast<double>(rng.next() >> 11) * 0x1.0p-53;
}

int32_t sample_token(const float* probs, int vocab, int usable, double temperature, int64_t top_k,
                     data::SplitMix64& rng) {
  const int n = std::min(vocab, usable);
  DS_CHECK(n > 0, "nothing to sample from");
  if (temperature <= 0 || top_k == 1) {
    return static_cast<int32_t>(std::max_element(probs, probs + n) - probs);
  }
  // Candidates by descending probability (ties: lower id first), cut to top_k.
  std::vector<int32_t> ids;
  ids.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    if (probs[i] > 0) ids.push_back(i);
  }
  if (ids.empty()) return 0;
  const auto higher = [&](int32_t a, int32_t b) {
    return probs[a] != probs[b] ? probs[a] > probs[b] : a < b;
  };
  if (top_k > 0 && static_cast<size_t>(top_k) < ids.size()) {
    std::partial_sort(ids.begin(), ids.begin() + top_k, ids.end(), higher);
    ids.resize(static_cast<size_t>(top_k));
  }
  // p^(1/T), normalised: the temperature applied to the log-probabilities.
  double max_logp = -INFINITY;
  for (int32_t id : ids) max_logp = std::max(max_logp, std::log(static_cast<double>(probs[id])));
  std::vector<double> weights(ids.size());
  double total = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    weights[i] = std::exp((std::log(static_cast<double>(probs[ids[i]])) - max_logp) / temperature);
    total += weights[i];
  }
  const double u = uniform01(rng) * total;
  double cumulative = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    cumulative += weights[i];
    if (u < cumulative) return ids[i];
  }
  return ids.back();  // rounding at the very top
}

std::vector<int32_t> generate(model::Gpt& model, const float* params, std::vector<int32_t> context,
                              int usable_vocab, const GenerateOptions& options,
                              const std::function<void(int32_t)>& on_token) {
  DS_CHECK(!context.empty(), "generation needs at least one token of context");
  const auto& cfg = model.config();
  const int block = static_cast<int>(cfg.block_size);
  const int V = static_cast<int>(cfg.vocab_size);
  const auto* head = dynamic_cast<const model::HeadLayer*>(model.layers().back().get());
  DS_CHECK(head != nullptr, "the model's last layer is not the LM head");
  model.reserve(1, block);
  std::vector<int32_t> targets(static_cast<size_t>(block), 0);
  data::SplitMix64 rng(options.seed);
  for (int64_t i = 0; i < options.tokens; ++i) {
    const int T = std::min(block, static_cast<int>(context.size()));
    model::MicroBatch mb;
    mb.tokens = context.data() + (context.size() - static_cast<size_t>(T));
    mb.targets = targets.data();
    mb.B = 1;
    mb.T = T;
    model.forward(params, mb);
    const float* probs = head->probabilities() + static_cast<int64_t>(T - 1) * V;
    const int32_t next =
        sample_token(probs, V, usable_vocab, options.temperature, options.top_k, rng);
    context.push_back(next);
    if (on_token) on_token(next);
  }
  return context;
}

std::vector<int32_t> prompt_tokens(const Tokenizer& tokenizer, std::string_view prompt,
                                   int64_t model_vocab) {
  std::vector<int32_t> tokens = tokenizer.encode(prompt);
  if (tokens.empty()) tokens.push_back(tokenizer.is_bytes() ? '\n' : tokenizer.eot());
  for (int32_t t : tokens) {
    if (t >= model_vocab) {
      throw UsageError(
          fmt::format("the prompt has token {} but the model's vocabulary has {} tokens", t,
                      model_vocab),
          tokenizer.is_bytes() ? "a byte-level model with a small vocabulary reads only the bytes "
                                 "below its vocab_size: use characters from its training text"
                               : "use the tokenizer the model was trained with");
    }
  }
  return tokens;
}

std::string generate_text(model::Gpt& model, const float* params, const Tokenizer& tokenizer,
                          std::string_view prompt, const GenerateOptions& options) {
  const int usable =
      std::min<int>(tokenizer.vocab_size(), static_cast<int>(model.config().vocab_size));
  std::vector<int32_t> generated;
  generate(model, params, prompt_tokens(tokenizer, prompt, model.config().vocab_size), usable,
           options, [&](int32_t token) { generated.push_back(token); });
  return std::string(prompt) + tokenizer.decode(generated);
}

namespace {

config::ModelConfig model_from_options(const SampleOptions& options) {
  if (!options.config.empty() && !options.model.empty()) {
    throw UsageError("both --config and --model given", "give one: the train.cfg or the model");
  }
  if (!options.config.empty()) return config::load_train_config(options.config).model;
  if (options.model.empty()) {
    throw UsageError("no model given",
                     "pass --config train.cfg (the run's config) or --model PRESET|FILE|{map}");
  }
  // The spec reads exactly as a train.cfg's `model:` value does.
  auto doc = std::make_shared<config::Document>();
  doc->name = "--model";
  doc->dir = std::filesystem::current_path();
  YAML::Node value;
  try {
    value = options.model.front() == '{' ? YAML::Load(options.model) : YAML::Node(options.model);
  } catch (const YAML::Exception& e) {
    throw UsageError(fmt::format("--model {}: cannot parse: {}", options.model, e.msg),
                     "give a preset name, a model file, or a YAML map such as "
                     "\"{preset: gpt-tiny, block_size: 64}\"");
  }
  doc->root["model"] = value;
  config::MapReader root(doc, doc->root, "");
  return config::parse_model(root, "model");
}

}  // namespace

void sample_command(const SampleOptions& options, std::ostream& out) {
  if (options.weights.empty()) {
    throw UsageError(
        "no weights given",
        "pass --weights F.safetensors (e.g. from --save-weights or checkpoint.export)");
  }
  const config::ModelConfig m = model_from_options(options);
  const Tokenizer tokenizer =
      options.tokenizer.empty() ? Tokenizer::bytes() : Tokenizer::load(options.tokenizer);
  if (tokenizer.is_bytes() && m.vocab_size > 256) {
    throw UsageError(
        fmt::format("the model has a vocabulary of {} tokens, not bytes", m.vocab_size),
        "pass --tokenizer gpt2_tokenizer.bin (llm.c's format)");
  }
  if (tokenizer.vocab_size() > m.vocab_size) {
    throw UsageError(fmt::format("the tokenizer has {} tokens but the model only {}",
                                 tokenizer.vocab_size(), m.vocab_size),
                     "use the tokenizer the model was trained with");
  }
  model::Gpt gpt(m);
  std::vector<float> params(static_cast<size_t>(gpt.layout().total), 0.0f);
  checkpoint::load_weights(options.weights, gpt.layout(), m.tie_embeddings, params.data());

  const std::vector<int32_t> prompt = prompt_tokens(tokenizer, options.prompt, m.vocab_size);
  out << options.prompt << std::flush;
  const auto start = std::chrono::steady_clock::now();
  // Printed as it comes, each piece once its UTF-8 is complete (a BPE token may end
  // inside a character).
  std::vector<int32_t> generated;
  size_t printed = 0;
  generate(gpt, params.data(), prompt, tokenizer.vocab_size(), options.generate,
           [&](int32_t token) {
             generated.push_back(token);
             const std::string text = tokenizer.decode(generated);
             if (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0) return;
             if (text.size() > printed) out << text.substr(printed) << std::flush;
             printed = text.size();
           });
  out << '\n' << std::flush;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::info("sampled {} tokens in {:.2f} s ({:.0f} tokens/s); temperature {}, top_k {}, seed {}",
            options.generate.tokens, seconds,
            static_cast<double>(options.generate.tokens) / std::max(seconds, 1e-9),
            options.generate.temperature, options.generate.top_k, options.generate.seed);
}

}  // namespace ds::worker
