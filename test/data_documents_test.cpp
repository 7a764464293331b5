// Instruction data: JSON lines through a field or a template, bytes or a tokenizer.json,
// mask_prompt targets, packing against padding, the token cache and every kind of bad
// input (each a UsageError naming the file and line, or a ConfigError naming the key).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config_helpers.h"
#include "data/documents.h"
#include "data/sampler.h"
#include "data/token_dataset.h"
#include "process_helpers.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer_json.h"
#include "util/error.h"

namespace fs = std::filesystem;
using ds::data::Datasets;
using ds::data::kIgnoreTarget;
using ds::data::load_datasets;
using ds::testing::TempDir;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;

namespace {

// The token caches written beside the data in `dir`.
std::vector<std::string> caches(const TempDir& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    if (e.path().extension() == ".tokens") out.push_back(e.path().filename().string());
  }
  return out;
}

// A GPT-2-style tokenizer: 256 byte tokens, merges "h e" → 256 and "Ġ t" → 257, specials
// <s> = 258 and </s> = 259 named BOS and EOS by tokenizer_config.json.
void write_tokenizer(const TempDir& dir) {
  const json vocab = ds::testing::byte_vocab({"he", "Ġt"});
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = json::array(
      {ds::testing::added_token("<s>", 258, true), ds::testing::added_token("</s>", 259, true)});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = ds::testing::gpt2_pre_tokenizer();
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", {"h e", "Ġ t"}}};
  dir.write("tokenizer.json", j.dump());
  dir.write("tokenizer_config.json", R"({"bos_token": "<s>", "eos_token": "</s>"})");
}

// The data section of a train.cfg in `dir`, parsed as the trainer gets it.
ds::config::DataConfig data_config(const TempDir& dir, const std::string& data_keys,
                                   int64_t block_size = 16) {
  const std::string yaml = fmt::format(
      "model: {{n_layer: 1, n_head: 1, n_embd: 8, vocab_size: 512, block_size: {}}}\n"
      "data: {{{}}}\n"
      "deepspeed: {{train_micro_batch_size_per_gpu: 1}}\n",
      block_size, data_keys);
  auto doc = ds::config::parse_document(yaml, dir.file("train.yaml"), dir.file(""), false);
  return ds::config::parse_train_config(doc).data;
}

Ids bytes_of(std::string_view s) { return Ids(s.begin(), s.end()); }

Ids concat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

const char* kAlpaca =
    R"(template: {prompt: ["Q: {instruction}\nIn: {input}\nA: ", "Q: {instruction}\nA: "], )"
    R"(response: "{output}"})";

template <typename Fn>
std::string usage_error(Fn&& fn) {
  try {
    fn();
  } catch (const ds::UsageError& e) {
    return e.what();
  }
  FAIL("expected a UsageError");
  return "";
}

}  // namespace

TEST_CASE("data: jsonl field with the byte tokenizer ends each document with byte 0",
          "[data][jsonl]") {
  TempDir dir;
  dir.write("d.jsonl", "{\"text\": \"ab\"}\n\n{\"text\": \"c\", \"x\": 1}\n");
  const auto cfg = data_config(dir, "train: d.jsonl, val_fraction: 0, seq_len: 2");
  const Datasets d = load_datasets(cfg, 256, 2);
  CHECK(d.train.tokens == Ids{'a', 'b', 0, 'c', 0});
  CHECK(d.train.document_ends == std::vector<int64_t>{3, 5});
  CHECK(d.train.ignored.empty());
  CHECK(d.tokenizer == "bytes");
}

TEST_CASE("data: a tokenizer.json encodes documents with BOS and EOS", "[data][jsonl]") {
  TempDir dir;
  write_tokenizer(dir);
  dir.write("d.jsonl", R"({"body": "he the"})"
                       "\n");
  const auto cfg = data_config(
      dir, "train: d.jsonl, field: body, tokenizer: tokenizer.json, val_fraction: 0, seq_len: 2");
  const Datasets d = load_datasets(cfg, 512, 2);
  // "he the" → "he" | " the" → [256] [257 256]
  CHECK(d.train.tokens == Ids{258, 256, 257, 256, 259});
  CHECK(d.train.pad_id == 259);
  CHECK_THAT(d.tokenizer, Catch::Contains("tokenizer.json"));

  SECTION("plain text goes through it too, one document per file") {
    dir.write("t.txt", "he");
    const auto text =
        data_config(dir, "train: t.txt, tokenizer: tokenizer.json, val_fraction: 0, seq_len: 2");
    CHECK(load_datasets(text, 512, 2).train.tokens == Ids{258, 256, 259});
  }
  SECTION("its vocabulary must fit the model") {
    const std::string msg = usage_error([&] { load_datasets(cfg, 259, 2); });
    CHECK_THAT(msg, Catch::Contains("260") && Catch::Contains("vocab_size 259") &&
                        Catch::Contains("tokenizer.json"));
  }
  SECTION("the model folder's tokenizer.json is the default") {
    const std::string yaml =
        "model: {n_layer: 1, n_head: 1, n_embd: 8, vocab_size: 512, block_size: 16}\n"
        "data: {train: d.jsonl}\n"
        "deepspeed: {train_micro_batch_size_per_gpu: 1}\n";
    auto doc = ds::config::parse_document(yaml, dir.file("train.yaml"), dir.file(""), false);
    auto train = ds::config::parse_train_config(doc);
    CHECK(train.data.tokenizer.empty());  // no model.from_hf: bytes
  }
}

TEST_CASE("data: templates pick the first alternative whose fields are all non-empty",
          "[data][template]") {
  TempDir dir;
  dir.write("d.jsonl", "{}\n");
  const auto cfg = data_config(dir, std::string("train: d.jsonl, ") + kAlpaca);
  const auto& prompt = cfg.text_template->prompt;
  REQUIRE(prompt.size() == 2);
  using ds::data::render_template;
  CHECK(render_template(prompt, R"({"instruction": "add", "input": "1 2"})", "f", 1) ==
        "Q: add\nIn: 1 2\nA: ");
  CHECK(render_template(prompt, R"({"instruction": "add", "input": ""})", "f", 1) == "Q: add\nA: ");
  CHECK(render_template(prompt, R"({"instruction": "add"})", "f", 1) == "Q: add\nA: ");
  CHECK(render_template(prompt, R"({"instruction": "", "input": null})", "f", 1) == "Q: \nA: ");
  CHECK_THAT(
      usage_error([&] { render_template(prompt, R"({"input": "x"})", "f.jsonl", 7); }),
      Catch::Contains("f.jsonl") && Catch::Contains("line 7") && Catch::Contains("'instruction'"));
  CHECK_THAT(usage_error([&] { render_template(prompt, R"({"instruction": 3})", "f", 2); }),
             Catch::Contains("'instruction' is a number, not a string"));

  const auto braces = data_config(dir, R"(train: d.jsonl, template: {response: "{{x}} {y}}}"})");
  CHECK(render_template(braces.text_template->response, R"({"y": "v"})", "f", 1) == "{x} v}");
}

TEST_CASE("data: template and option mistakes are config errors with their position",
          "[data][template]") {
  using ds::config::testing::train_failure;
  const std::string model = "model: {n_layer: 1, n_head: 1, n_embd: 8, block_size: 16}\n";
  auto fails = [&](const std::string& data, const std::string& what) {
    const auto f = train_failure(model + "data: " + data +
                                 "\ndeepspeed: {train_micro_batch_size_per_gpu: 1}\n");
    INFO(f.message);
    CHECK_THAT(f.message, Catch::Contains("train.yaml:2:") && Catch::Contains(what));
    CHECK(f.exit_code == 2);
  };
  fails(R"({train: d.jsonl, template: {response: "{output"}})", "is not closed");
  fails(R"({train: d.jsonl, template: {prompt: ["a", "{x"], response: "{o}"}})", "alternative 2");
  fails(R"({train: d.jsonl, template: {response: "a}b"}})", "unmatched '}'");
  fails(R"({train: d.jsonl, template: {response: "{}"}})", "empty field name");
  fails(R"({train: d.jsonl, template: {prompt: "{p}"}})", "data.template.response");
  fails(R"({train: d.jsonl, template: {response: "{o}", extra: 1}})", "extra");
  fails(R"({train: d.jsonl, field: t, template: {response: "{o}"}})", "together");
  fails(R"({train: d.txt, field: t})", "JSON-lines data only");
  fails(R"({train: d.jsonl, mask_prompt: true})", "mask_prompt needs a prompt");
  fails(R"({train: d.bin, tokenizer: t.json})", "tokenizer is not used");
  fails(R"({train: d.bin, packing: false})", "packing");
}

TEST_CASE("data: mask_prompt ignores exactly the prompt's targets", "[data][mask]") {
  TempDir dir;
  dir.write("d.jsonl",
            "{\"instruction\": \"ab\", \"output\": \"XY\"}\n"
            "{\"instruction\": \"c\", \"input\": \"d\", \"output\": \"Z\"}\n");
  const auto cfg = data_config(
      dir, std::string("train: d.jsonl, val_fraction: 0, shuffle: false, mask_prompt: true, ") +
               kAlpaca);
  const int64_t T = 4;
  const Datasets d = load_datasets(cfg, 256, T);
  const Ids first = concat({bytes_of("Q: ab\nA: "), bytes_of("XY"), {0}});
  const Ids second = concat({bytes_of("Q: c\nIn: d\nA: "), bytes_of("Z"), {0}});
  REQUIRE(d.train.tokens == concat({first, second}));
  // The flags: 1 on prompt tokens, 0 on the response and EOS.
  std::vector<uint8_t> expected(first.size() + second.size(), 1);
  for (size_t k : {first.size() - 3, first.size() - 2, first.size() - 1, expected.size() - 2,
                   expected.size() - 1}) {
    expected[k] = 0;
  }
  CHECK(d.train.ignored == expected);

  // Every window, by the documented rule: targets -100 exactly where M is 1.
  ds::data::SamplerOptions so;
  so.seq_len = T;
  ds::data::TrainSampler s(d.train.view(), so);
  const auto L = static_cast<int64_t>(d.train.tokens.size());
  int64_t counted = 0;
  for (int64_t i = 0; i < L / T; ++i) {
    Ids in(T), tg(T);
    s.fill_sample(i, in.data(), tg.data());
    for (int64_t t = 0; t < T; ++t) {
      const auto j = static_cast<size_t>((i * T + t + 1) % L);
      CHECK(in[static_cast<size_t>(t)] == d.train.tokens[static_cast<size_t>((i * T + t) % L)]);
      CHECK(tg[static_cast<size_t>(t)] == (expected[j] ? kIgnoreTarget : d.train.tokens[j]));
      counted += tg[static_cast<size_t>(t)] != kIgnoreTarget;
    }
  }
  // Windows cover [0, L/T*T) + 1; the counted targets are "XY", EOS, "Z", EOS in range.
  int64_t in_range = 0;
  for (int64_t j = 1; j <= L / T * T; ++j) in_range += expected[static_cast<size_t>(j % L)] == 0;
  CHECK(counted == in_range);
  CHECK(counted >= 3);
}

TEST_CASE("data: packing false gives each document its own padded samples", "[data][packing]") {
  TempDir dir;
  dir.write("d.jsonl",
            "{\"p\": \"ab\", \"r\": \"c\"}\n"      // 4 tokens: a b c EOS
            "{\"p\": \"\", \"r\": \"0123456\"}\n"  // 8 tokens
            "{\"p\": \"long prompt\", \"r\": \"\"}\n");
  const auto cfg =
      data_config(dir, R"(train: d.jsonl, val_fraction: 0, shuffle: false, packing: false, )"
                       R"(mask_prompt: true, template: {prompt: "{p}", response: "{r}"})");
  const int64_t T = 5;
  const Datasets d = load_datasets(cfg, 256, T);
  // Doc 1 [0, 4) one span; doc 2 [4, 12) spans at 4 (len 6) and 9 (len 3); doc 3 is all
  // prompt except its EOS: [12, 24) spans at 12, 17 have no target, 22 (len 2) has EOS.
  REQUIRE(d.train.samples.size() == 4);
  CHECK(d.train.samples[0].start == 0);
  CHECK(d.train.samples[0].length == 4);
  CHECK(d.train.samples[1].start == 4);
  CHECK(d.train.samples[1].length == 6);
  CHECK(d.train.samples[2].start == 9);
  CHECK(d.train.samples[2].length == 3);
  CHECK(d.train.samples[3].start == 22);
  CHECK(d.train.samples[3].length == 2);

  ds::data::SamplerOptions so;
  so.seq_len = T;
  ds::data::TrainSampler s(d.train.view(), so);
  Ids in(T), tg(T);
  s.fill_sample(0, in.data(), tg.data());
  CHECK(in == Ids{'a', 'b', 'c', 0, 0});
  CHECK(tg == Ids{kIgnoreTarget, 'c', 0, kIgnoreTarget, kIgnoreTarget});
  s.fill_sample(2, in.data(), tg.data());
  CHECK(in == Ids{'5', '6', 0, 0, 0});
  CHECK(tg == Ids{'6', 0, kIgnoreTarget, kIgnoreTarget, kIgnoreTarget});
  s.fill_sample(4, in.data(), tg.data());  // i mod N = 0
  CHECK(in == Ids{'a', 'b', 'c', 0, 0});

  SECTION("with packing the same documents are one stream read in windows") {
    auto packed = cfg;
    packed.packing = true;
    const Datasets p = load_datasets(packed, 256, T);
    CHECK(p.train.samples.empty());
    CHECK(p.train.tokens == d.train.tokens);
  }
  SECTION("shuffled unpacked samples follow the epoch permutation") {
    so.shuffle = true;
    so.seed = 5;
    ds::data::TrainSampler sh(d.train.view(), so);
    const auto perm = ds::data::epoch_permutation(5, 1, 4);
    for (int64_t p = 0; p < 4; ++p) {
      CHECK(sh.span_index(4 + p) == perm[static_cast<size_t>(p)]);
    }
  }
  SECTION("eval reads span (b*MB + k) mod N") {
    ds::data::EvalSampler e(d.train.view(), T, 3);
    CHECK(e.window_start(1, 0) == 22);
    CHECK(e.window_start(1, 1) == 0);
  }
}

TEST_CASE("data: jsonl validation takes the last documents", "[data][val]") {
  TempDir dir;
  std::string lines;
  for (int i = 0; i < 10; ++i) lines += fmt::format("{{\"text\": \"document {}\"}}\n", i);
  dir.write("d.jsonl", lines);
  const auto cfg = data_config(dir, "train: d.jsonl, val_fraction: 0.2");
  const Datasets d = load_datasets(cfg, 256, 4);
  CHECK(d.train.documents() == 8);
  CHECK(d.val.documents() == 2);
  CHECK(d.val.tokens == concat({bytes_of("document 8"), {0}, bytes_of("document 9"), {0}}));
  CHECK(d.val_split_from_train);

  const auto tiny = data_config(dir, "train: d.jsonl, val_fraction: 0.05");
  CHECK_THAT(usage_error([&] { load_datasets(tiny, 256, 4); }),
             Catch::Contains("10 documents is 0 documents"));
}

TEST_CASE("data: the token cache is reused and rebuilt when anything changes", "[data][cache]") {
  TempDir dir;
  write_tokenizer(dir);
  dir.write("d.jsonl", "{\"q\": \"the\", \"a\": \"he\"}\n{\"q\": \"t\", \"a\": \"h\"}\n");
  const std::string keys = R"(train: d.jsonl, val_fraction: 0, tokenizer: tokenizer.json, )";
  const auto cfg = data_config(dir, keys + R"(template: {prompt: "{q}", response: "{a}"})");
  const Datasets first = load_datasets(cfg, 512, 2);
  CHECK(first.files_tokenised == 1);
  CHECK(first.files_from_cache == 0);
  REQUIRE(caches(dir).size() == 1);
  const std::string cache = ds::data::cache_path(
      dir.file("d.jsonl"), cfg, ds::data::DataTokenizer::load(dir.file("tokenizer.json")));
  CHECK(fs::exists(cache));
  CHECK_THAT(cache, Catch::EndsWith(".tokens") && Catch::StartsWith(dir.file("d.jsonl.")));

  const Datasets second = load_datasets(cfg, 512, 2);
  CHECK(second.files_tokenised == 0);
  CHECK(second.files_from_cache == 1);
  CHECK(second.train.tokens == first.train.tokens);
  CHECK(second.train.document_ends == first.train.document_ends);

  SECTION("a changed template is a new cache") {
    const auto other = data_config(dir, keys + R"(template: {prompt: "{q}:", response: "{a}"})");
    const Datasets d = load_datasets(other, 512, 2);
    CHECK(d.files_tokenised == 1);
    CHECK(caches(dir).size() == 2);
  }
  SECTION("changed data are a new cache") {
    dir.write("d.jsonl", "{\"q\": \"the\", \"a\": \"hex\"}\n{\"q\": \"t\", \"a\": \"h\"}\n");
    const Datasets d = load_datasets(cfg, 512, 2);
    CHECK(d.files_tokenised == 1);
    CHECK(d.train.tokens != first.train.tokens);
  }
  SECTION("a changed tokenizer is a new cache") {
    dir.write("tokenizer_config.json", R"({"bos_token": "</s>", "eos_token": "<s>"})");
    const Datasets d = load_datasets(cfg, 512, 2);
    CHECK(d.files_tokenised == 1);
    CHECK(d.train.tokens.front() == 259);
  }
  SECTION("a broken cache file is rebuilt") {
    std::ofstream(cache, std::ios::binary) << "DSTOKENS garbage";
    const Datasets d = load_datasets(cfg, 512, 2);
    CHECK(d.files_tokenised == 1);
    CHECK(d.train.tokens == first.train.tokens);
    CHECK(load_datasets(cfg, 512, 2).files_from_cache == 1);
  }
  SECTION("a cache that cannot be written is only a warning") {
    fs::remove(cache);
    fs::create_directory(cache);  // rename() onto a folder fails, even for root
    const Datasets d = load_datasets(cfg, 512, 2);
    CHECK(d.files_tokenised == 1);
    CHECK(d.train.tokens == first.train.tokens);
  }
  SECTION("cache: false neither reads nor writes it") {
    auto off = cfg;
    off.cache = false;
    fs::remove(cache);
    CHECK(load_datasets(off, 512, 2).files_tokenised == 1);
    CHECK(caches(dir).empty());
  }
}

TEST_CASE("data: bad JSON-lines input names the file and line", "[data][errors]") {
  TempDir dir;
  const auto fails = [&](const std::string& content, const std::string& keys,
                         std::vector<std::string> parts) {
    const std::string file = dir.write("bad.jsonl", content);
    const auto cfg = data_config(dir, "train: bad.jsonl, val_fraction: 0, cache: false, " + keys);
    const std::string msg = usage_error([&] { load_datasets(cfg, 256, 2); });
    INFO(msg);
    CHECK_THAT(msg, Catch::Contains(file));
    for (const auto& p : parts) CHECK_THAT(msg, Catch::Contains(p));
  };
  const std::string ok = "{\"text\": \"fine\"}\n";
  fails(ok + "{\"text\": \"broken\n", "field: text", {"line 2", "not valid JSON"});
  fails(ok + "[1, 2]\n", "field: text", {"line 2", "expected a JSON object, found an array"});
  fails(ok + ok + "{\"body\": \"x\"}\n", "field: text", {"line 3", "no field 'text'"});
  fails(ok + "{\"text\": 5}\n", "field: text", {"line 2", "'text' is a number"});
  fails("{\"a\": \"x\", \"b\": \"y\"}\n{\"a\": \"x\"}\n",
        R"(template: {prompt: "{a}", response: "{b}"})", {"line 2", "no field 'b'"});
  fails("\n  \n", "field: text", {"no documents"});
  fails("", "field: text", {"is empty"});
  {
    const std::string file = dir.write("wide.jsonl", ok + "{\"text\": \"\\u00ff\"}\n");
    const auto cfg = data_config(dir, "train: wide.jsonl, val_fraction: 0, cache: false");
    CHECK_THAT(usage_error([&] { load_datasets(cfg, 120, 2); }),
               Catch::Contains(file) && Catch::Contains("line 2") &&
                   Catch::Contains("not below the model's vocab_size 120"));
  }

  dir.write("tok.json", "{\"model\": 1");
  dir.write("d.jsonl", ok);
  const auto cfg = data_config(dir, "train: d.jsonl, tokenizer: tok.json");
  CHECK_THAT(usage_error([&] { load_datasets(cfg, 256, 2); }), Catch::Contains("tok.json"));
  const auto missing = data_config(dir, "train: d.jsonl, tokenizer: none.json");
  CHECK_THAT(usage_error([&] { load_datasets(missing, 256, 2); }), Catch::Contains("none.json"));
  const auto no_file = data_config(dir, "train: nothing.jsonl");
  CHECK_THAT(usage_error([&] { load_datasets(no_file, 256, 2); }),
             Catch::Contains("nothing.jsonl") && Catch::Contains("no such file"));
}
