// `dsworker sample`: tokenizers, the seeded draw, and generation from saved weights.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/weights_file.h"
#include "model/head_layer.h"
#include "model/init.h"
#include "process_helpers.h"
#include "tokenizer_json.h"
#include "worker/sample_command.h"

namespace ds::worker {
namespace {

using ds::testing::TempDir;

// An llm.c tokenizer file: the 256 bytes, then a few merged tokens, then EOT.
std::string tokenizer_file(uint32_t magic = 20240328, uint32_t version = 2) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, static_cast<char>(b)));
  for (const char* t : {"th", "the", " the", "he", " cat", "<|endoftext|>"}) tokens.push_back(t);
  uint32_t header[256] = {};
  header[0] = magic;
  header[1] = version;
  header[2] = static_cast<uint32_t>(tokens.size());
  header[3] = static_cast<uint32_t>(tokens.size() - 1);
  std::string bytes(reinterpret_cast<const char*>(header), sizeof header);
  for (const std::string& t : tokens) {
    bytes += static_cast<char>(t.size());
    bytes += t;
  }
  return bytes;
}

// The text of one token.
std::string decode_one(const Tokenizer& t, int32_t token) {
  return t.decode(std::span<const int32_t>(&token, 1));
}

TEST_CASE("the byte tokenizer", "[sample]") {
  const Tokenizer t = Tokenizer::bytes();
  CHECK(t.is_bytes());
  CHECK(t.vocab_size() == 256);
  CHECK(t.encode("Hi\n") == std::vector<int32_t>{'H', 'i', '\n'});
  CHECK(decode_one(t, 'A') == "A");
  CHECK(decode_one(t, '\n') == "\n");
  CHECK(decode_one(t, 7).empty());       // a bell prints as nothing
  CHECK(decode_one(t, 0xc3) == "\xc3");  // a piece of UTF-8 stays
}

TEST_CASE("llm.c's tokenizer file: decode, greedy encode, bad files", "[sample]") {
  TempDir dir("sample_tokenizer");
  const Tokenizer t = Tokenizer::load(dir.write("tok.bin", tokenizer_file()));
  CHECK_FALSE(t.is_bytes());
  CHECK(t.vocab_size() == 262);
  CHECK(t.eot() == 261);
  CHECK(decode_one(t, 258) == " the");
  CHECK(decode_one(t, 261) == "<|endoftext|>");
  // Longest match first: " the" beats " " + "the"; "he" is used when "the" cannot be.
  CHECK(t.encode(" the cat") == std::vector<int32_t>{258, 260});
  CHECK(t.encode("he") == std::vector<int32_t>{259});
  CHECK(t.encode("thx") == std::vector<int32_t>{256, 'x'});

  CHECK_THROWS_WITH(Tokenizer::load(dir.write("bad.bin", tokenizer_file(1234))),
                    Catch::Matchers::Contains("magic 1234"));
  CHECK_THROWS_WITH(Tokenizer::load(dir.write("v1.bin", tokenizer_file(20240328, 1))),
                    Catch::Matchers::Contains("instead of 50257"));
  CHECK_THROWS_WITH(Tokenizer::load(dir.write("v3.bin", tokenizer_file(20240328, 3))),
                    Catch::Matchers::Contains("version 3"));
  CHECK_THROWS_WITH(Tokenizer::load(dir.write("short.bin", tokenizer_file().substr(0, 1100))),
                    Catch::Matchers::Contains("tok"));
  CHECK_THROWS_AS(Tokenizer::load(dir.file("missing.bin")), UsageError);
}

TEST_CASE("sample_token: argmax, top_k, temperature, seeds", "[sample]") {
  const std::vector<float> p = {0.1f, 0.5f, 0.05f, 0.3f, 0.05f};
  data::SplitMix64 rng(7);
  CHECK(sample_token(p.data(), 5, 5, 0.0, 0, rng) == 1);
  CHECK(sample_token(p.data(), 5, 5, 1.0, 1, rng) == 1);
  CHECK(sample_token(p.data(), 5, 1, 1.0, 0, rng) == 0);  // only id 0 is usable

  // Frequencies follow the probabilities (20000 draws: ~3.5 sigma bounds).
  std::vector<int> counts(5, 0);
  for (int i = 0; i < 20000; ++i) ++counts[sample_token(p.data(), 5, 5, 1.0, 0, rng)];
  for (int i = 0; i < 5; ++i) {
    const double expected = 20000 * p[i];
    CHECK(std::abs(counts[i] - expected) < 3.5 * std::sqrt(expected) + 5);
  }
  // top_k 2 keeps ids 1 and 3, renormalised 0.625 / 0.375.
  std::vector<int> top2(5, 0);
  for (int i = 0; i < 20000; ++i) ++top2[sample_token(p.data(), 5, 5, 1.0, 2, rng)];
  CHECK(top2[0] + top2[2] + top2[4] == 0);
  CHECK(std::abs(top2[1] - 12500) < 250);
  // Temperature 0.5 squares the odds: 0.5² : 0.3² ...
  std::vector<int> cold(5, 0);
  for (int i = 0; i < 20000; ++i) ++cold[sample_token(p.data(), 5, 5, 0.5, 0, rng)];
  const double z = 0.01 + 0.25 + 0.0025 + 0.09 + 0.0025;
  CHECK(std::abs(cold[1] - 20000 * 0.25 / z) < 250);

  data::SplitMix64 a(42), b(42);
  for (int i = 0; i < 50; ++i) {
    CHECK(sample_token(p.data(), 5, 5, 1.0, 0, a) == sample_token(p.data(), 5, 5, 1.0, 0, b));
  }
  data::SplitMix64 u(1);
  for (int i = 0; i < 1000; ++i) {
    const double x = uniform01(u);
    CHECK((x >= 0 && x < 1));
  }
}

struct TinyModel {
  config::ModelConfig config;
  std::unique_ptr<model::Gpt> gpt;
  std::vector<float> params;
  TinyModel() {
    config.n_layer = 1;
    config.n_head = 2;
    config.n_embd = 16;
    config.vocab_size = 256;
    config.block_size = 8;
    gpt = std::make_unique<model::Gpt>(config);
    params.resize(static_cast<size_t>(gpt->layout().total));
    model::init_weights(gpt->layout(), config, 99, params.data());
  }
};

TEST_CASE("generate: seeded, windowed to block_size, within the usable vocabulary", "[sample]") {
  TinyModel m;
  GenerateOptions o;
  o.tokens = 20;  // longer than block_size: the context slides
  o.seed = 3;
  const auto a = generate(*m.gpt, m.params.data(), {'a', 'b'}, 128, o);
  const auto b = generate(*m.gpt, m.params.data(), {'a', 'b'}, 128, o);
  REQUIRE(a.size() == 22);
  CHECK(a == b);
  CHECK(a[0] == 'a');
  for (int32_t t : a) CHECK(t < 128);
  o.seed = 4;
  CHECK(generate(*m.gpt, m.params.data(), {'a', 'b'}, 128, o) != a);

  // Greedy follows the head's argmax at the last position.
  o.temperature = 0;
  o.tokens = 1;
  const auto g = generate(*m.gpt, m.params.data(), {'x'}, 256, o);
  std::vector<int32_t> targets(1, 0);
  std::vector<int32_t> tokens = {'x'};
  model::MicroBatch mb{tokens.data(), targets.data(), 1, 1, 0};
  m.gpt->forward(m.params.data(), mb);
  const auto* head = dynamic_cast<const model::HeadLayer*>(m.gpt->layers().back().get());
  const float* probs = head->probabilities();
  CHECK(g[1] == std::max_element(probs, probs + 256) - probs);
}

TEST_CASE("sample_command: saved weights in, prompt and continuation out", "[sample]") {
  TempDir dir("sample_command");
  TinyModel m;
  const std::string weights = dir.file("w.safetensors");
  checkpoint::save_weights(weights, m.gpt->layout(), m.params.data());

  SampleOptions o;
  o.model = "{n_layer: 1, n_head: 2, n_embd: 16, vocab_size: 256, block_size: 8}";
  o.weights = weights;
  o.prompt = "Once";
  o.generate.tokens = 30;
  o.generate.seed = 11;
  std::ostringstream first, second;
  sample_command(o, first);
  sample_command(o, second);
  CHECK(first.str() == second.str());
  CHECK(first.str().rfind("Once", 0) == 0);
  CHECK(first.str().back() == '\n');
  // The same text as generate_text with the same seed.
  CHECK(first.str() ==
        generate_text(*m.gpt, m.params.data(), Tokenizer::bytes(), "Once", o.generate) + "\n");

  SECTION("a model that does not fit the weights is named") {
    o.model = "{n_layer: 2, n_head: 2, n_embd: 16, vocab_size: 256, block_size: 8}";
    std::ostringstream out;
    CHECK_THROWS_WITH(sample_command(o, out), Catch::Matchers::Contains("transformer.h.1"));
  }
  SECTION("a GPT-2 vocabulary needs a tokenizer") {
    o.model = "gpt2-124m";
    std::ostringstream out;
    CHECK_THROWS_WITH(sample_command(o, out), Catch::Matchers::Contains("not bytes"));
  }
  SECTION("no model") {
    o.model.clear();
    std::ostringstream out;
    CHECK_THROWS_AS(sample_command(o, out), UsageError);
  }
  SECTION("a tokenizer larger than the model's vocabulary") {
    o.tokenizer = dir.write("tok.bin", tokenizer_file());
    std::ostringstream out;
    CHECK_THROWS_WITH(sample_command(o, out), Catch::Matchers::Contains("262 tokens"));
  }
}

TEST_CASE("dsworker sample from the command line", "[sample]") {
  TempDir dir("sample_cli");
  TinyModel m;
  const std::string weights = dir.file("w.safetensors");
  checkpoint::save_weights(weights, m.gpt->layout(), m.params.data());
  const std::string model = "'{n_layer: 1, n_head: 2, n_embd: 16, vocab_size: 256, block_size: 8}'";
  const auto r =
      ds::testing::run(ds::testing::kBin + "dsworker sample --model " + model + " --weights " +
                       weights + " --prompt Hi -n 12 --temperature 0.8 --top_k 20 --seed 5");
  CHECK(r.code == 0);
  CHECK(r.out.rfind("Hi", 0) == 0);
  CHECK_THAT(r.out, Catch::Matchers::Contains("sampled 12 tokens"));
  const auto bad = ds::testing::run(ds::testing::kBin + "dsworker sample --model " + model +
                                    " --weights " + dir.file("missing.safetensors"));
  CHECK(bad.code == 2);
}

TEST_CASE("a tokenizer.json encodes prompts and decodes whole characters", "[sample]") {
  // Byte-level BPE: the 256 byte tokens (GPT-2's printable stand-ins) and an end token.
  const nlohmann::json vocab = ds::testing::byte_vocab();
  const nlohmann::json tokenizer = {
      {"added_tokens", {ds::testing::added_token("<|end|>", 256, true)}},
      {"normalizer", nullptr},
      {"pre_tokenizer", ds::testing::gpt2_pre_tokenizer()},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  TempDir dir("sample_bpe");
  const Tokenizer t = Tokenizer::load(dir.write("tokenizer.json", tokenizer.dump()));
  CHECK_FALSE(t.is_bytes());
  CHECK(t.vocab_size() == 257);
  const std::vector<int32_t> ids = t.encode("h\xc3\xa9<|end|>");  // "hé" and the end token
  CHECK(ids == std::vector<int32_t>{'h', 0xc3, 0xa9, 256});
  CHECK(t.decode(ids) == "h\xc3\xa9<|end|>");
  // Half a character is not printed as itself (the sample stream waits for the rest).
  CHECK(t.decode(std::vector<int32_t>{'h', 0xc3}) == "h\xef\xbf\xbd");
}

}  // namespace
}  // namespace ds::worker
