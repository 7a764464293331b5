// Byte-level BPE tokenizer: the two pre-tokenizer scanners against the regex semantics,
// BPE merges derived by hand, ignore_merges, added tokens (special, lstrip/rstrip,
// single_word), BOS/EOS discovery, decoding, random round trips and bad input.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "process_helpers.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/unicode_class.h"
#include "tokenizer_json.h"
#include "util/error.h"

namespace fs = std::filesystem;
using ds::testing::TempDir;
using ds::tokenizer::BpeTokenizer;
using ds::tokenizer::CharClass;
using ds::tokenizer::SplitPattern;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;

namespace {

std::string bl(std::string_view raw) { return ds::testing::byte_level(raw); }

std::vector<std::string> split(SplitPattern p, std::string_view s) {
  std::vector<std::string> out;
  auto sink = [&](std::string_view piece) { out.emplace_back(piece); };
  ds::tokenizer::split(p, s, sink);
  return out;
}
using Pieces = std::vector<std::string>;

using ds::testing::added_token;
using ds::testing::byte_vocab;

// GPT-2 style: ByteLevel pre-tokenizer with the GPT-2 regex, "a b" merges.
json gpt2_json() {
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = json::array({added_token("<|endoftext|>", 262, true, true)});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = ds::testing::gpt2_pre_tokenizer();
  j["post_processor"] = {{"type", "ByteLevel"},
                         {"add_prefix_space", true},
                         {"trim_offsets", false},
                         {"use_regex", true}};
  j["decoder"] = ds::testing::byte_level_decoder();
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", byte_vocab({"Ġt", "he", "Ġthe", "in", "ing", "Ġs"})},
                {"merges", {"Ġ t", "h e", "Ġt he", "i n", "in g", "Ġ s"}}};
  return j;
}

// Llama 3 style: Split with the Llama 3 regex + ByteLevel without regex, pair merges,
// ignore_merges, special tokens and a TemplateProcessing post-processor adding BOS.
json llama3_json() {
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = json::array({
      added_token("<|begin_of_text|>", 259, true),
      added_token("<|end_of_text|>", 260, true),
      added_token("<mask>", 261, false, false, true, true),
      added_token("cat", 262, false, true, false, false, true),
  });
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = ds::testing::llama3_pre_tokenizer();
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens",
       {{"<|begin_of_text|>",
         {{"id", "<|begin_of_text|>"}, {"ids", {259}}, {"tokens", {"<|begin_of_text|>"}}}}}}};
  j["decoder"] = ds::testing::byte_level_decoder();
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", true},
                {"vocab", byte_vocab({"he", "Ġh", "Ġhello"})},
                {"merges", json::array({json::array({"h", "e"}), json::array({"Ġ", "h"})})}};
  return j;
}

BpeTokenizer make(const json& j) { return BpeTokenizer::from_json(j.dump(), "test.json"); }

}  // namespace

TEST_CASE("tokenizer: unicode classes follow the Unicode Character Database", "[tokenizer]") {
  using ds::tokenizer::char_class;
  CHECK(char_class(U'a') == CharClass::kLetter);
  CHECK(char_class(U'\u00E9') == CharClass::kLetter);  // é
  CHECK(char_class(U'\u6F22') == CharClass::kLetter);  // 漢 (Lo)
  CHECK(char_class(U'\u02B0') == CharClass::kLetter);  // modifier letter (Lm)
  CHECK(char_class(U'\u0301') == CharClass::kOther);   // combining acute (Mn)
  CHECK(char_class(U'\u093F') == CharClass::kOther);   // Devanagari vowel sign (Mc)
  CHECK(char_class(U'7') == CharClass::kNumber);
  CHECK(char_class(U'\u0967') == CharClass::kNumber);  // Devanagari one (Nd)
  CHECK(char_class(U'\u2167') == CharClass::kNumber);  // Roman numeral eight (Nl)
  CHECK(char_class(U'\u00BD') == CharClass::kNumber);  // ½ (No)
  CHECK(char_class(U'\u00A0') == CharClass::kSpace);   // no-break space
  CHECK(char_class(U'\u0085') == CharClass::kSpace);   // NEL
  CHECK(char_class(U'\u3000') == CharClass::kSpace);
  CHECK(char_class(U'\u200B') == CharClass::kOther);  // zero width space is not White_Space
  CHECK(char_class(U'\u180E') == CharClass::kOther);
  CHECK(char_class(U'\U0001F600') == CharClass::kOther);   // 😀
  CHECK(char_class(U'\U00020000') == CharClass::kLetter);  // CJK Extension B
  CHECK(ds::tokenizer::is_word_char(U'_'));
  CHECK(ds::tokenizer::is_word_char(U'\u0301'));
  CHECK(ds::tokenizer::is_word_char(U'\u24B6'));  // Ⓐ: Alphabetic, not L
  CHECK_FALSE(ds::tokenizer::is_word_char(U'-'));
  CHECK(std::string(ds::tokenizer::unicode_version()).size() >= 5);
}

TEST_CASE("tokenizer: the GPT-2 scanner splits as the GPT-2 regex", "[tokenizer]") {
  auto g = [](std::string_view s) { return split(SplitPattern::kGpt2, s); };
  CHECK(g("it's  a\n") == Pieces{"it", "'s", " ", " a", "\n"});
  CHECK(g("Hello world!") == Pieces{"Hello", " world", "!"});
  CHECK(g(" 123abc") == Pieces{" 123", "abc"});
  CHECK(g("a \tb") == Pieces{"a", " ", "\t", "b"});
  CHECK(g("x   ") == Pieces{"x", "   "});
  CHECK(g("I'LL we're 'sup") == Pieces{"I", "'", "LL", " we", "'re", " '", "sup"});
  CHECK(g("''s") == Pieces{"''", "s"});
  CHECK(g(" ... ?!") == Pieces{" ...", " ?!"});
  CHECK(g("caf\xC3\xA9 \xE6\xBC\xA2\xE5\xAD\x97") ==
        Pieces{"caf\xC3\xA9", " \xE6\xBC\xA2\xE5\xAD\x97"});
  CHECK(g("e\xCC\x81t\xC3\xA9") == Pieces{"e", "\xCC\x81", "t\xC3\xA9"});  // a mark is not \p{L}
  CHECK(g("a\xC2\xA0"
          "b") == Pieces{"a", "\xC2\xA0", "b"});  // U+00A0 is \s
  CHECK(g("\n\n\nx") == Pieces{"\n\n", "\n", "x"});
}

TEST_CASE("tokenizer: the Llama 3 scanner splits as the Llama 3 regex", "[tokenizer]") {
  auto l = [](std::string_view s) { return split(SplitPattern::kLlama3, s); };
  CHECK(l("Hello world!!\r\n\r\nfoo") == Pieces{"Hello", " world", "!!\r\n\r\n", "foo"});
  CHECK(l("1234567") == Pieces{"123", "456", "7"});
  CHECK(l(" 42") == Pieces{" ", "42"});
  CHECK(l("I'M here") == Pieces{"I", "'M", " here"});
  CHECK(l("don'\xC5\xBF") == Pieces{"don", "'\xC5\xBF"});  // 'ſ folds to 's
  CHECK(l("  \n\n  x") == Pieces{"  \n\n", " ", " x"});
  CHECK(l("(hello") == Pieces{"(hello"});
  CHECK(l("\tfoo\nbar") == Pieces{"\tfoo", "\n", "bar"});
  CHECK(l("a ... b") == Pieces{"a", " ...", " b"});
  CHECK(l("x \r\n") == Pieces{"x", " \r\n"});
  CHECK(l("'sup") == Pieces{"'s", "up"});
  CHECK(l("'hello") == Pieces{"'hello"});
  CHECK(l("\xE2\x85\xA7\xE2\x85\xA7\xE2\x85\xA7\xE2\x85\xA7") ==
        Pieces{"\xE2\x85\xA7\xE2\x85\xA7\xE2\x85\xA7", "\xE2\x85\xA7"});  // Nl counts as \p{N}
}

TEST_CASE("tokenizer: GPT-2 style BPE merges lowest rank first", "[tokenizer]") {
  BpeTokenizer tok = make(gpt2_json());
  CHECK(tok.vocab_size() == 263);
  CHECK(tok.encode("") == Ids{});
  CHECK(tok.encode("the") == Ids{'t', 257});
  CHECK(tok.encode(" the") == Ids{258});
  CHECK(tok.encode("the thing") == Ids{'t', 257, 256, 'h', 260});
  CHECK(tok.encode(" sing") == Ids{261, 260});
  CHECK(tok.encode("Hello<|endoftext|> the") == Ids{'H', 'e', 'l', 'l', 'o', 262, 258});
  CHECK(tok.encode("a\xF0\x9F\x98\x80") == Ids{'a', 0xF0, 0x9F, 0x98, 0x80});
  CHECK(tok.token_id("<|endoftext|>") == 262);
  CHECK(tok.token_id(bl(" the")) == 258);
  CHECK(tok.id_to_token(258) == bl(" the"));
  CHECK(tok.bos_id() == 262);
  CHECK(tok.eos_id() == 262);
  CHECK(tok.decode(Ids{'t', 257, 262, 258}) == "the<|endoftext|> the");
  CHECK(tok.decode(Ids{'t', 257, 262, 258}, true) == "the the");
  CHECK(tok.decode(Ids{0xE2, 'a', 99999}) ==
        "\xEF\xBF\xBD"
        "a");                                                  // lossy; unknown id skipped
  CHECK(tok.decode(Ids{0xF0, 0x9F, 0x98}) == "\xEF\xBF\xBD");  // one maximal subpart
}

TEST_CASE("tokenizer: a merge is taken from the heap only while its pair still stands",
          "[tokenizer]") {
  // "a a a": (a,a) at 0 merges first; the entry at 1 is stale; "aa a" is not a merge.
  json j = gpt2_json();
  j["model"]["vocab"] = byte_vocab({"aa", "aaa"});
  j["model"]["merges"] = {"a a", "aa a"};
  BpeTokenizer tok = make(j);
  CHECK(tok.encode("aaa") == Ids{257});
  CHECK(tok.encode("aaaa") == Ids{256, 256});
  CHECK(tok.encode("aaaaa") == Ids{256, 257});
}

TEST_CASE("tokenizer: add_prefix_space puts a space before each piece", "[tokenizer]") {
  json j = gpt2_json();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  BpeTokenizer tok = make(j);
  CHECK(tok.encode("the") == Ids{258});
  CHECK(tok.encode(" the") == Ids{258});
  CHECK(tok.encode("the<|endoftext|>the") == Ids{258, 262, 258});
}

TEST_CASE("tokenizer: Llama 3 style: ignore_merges, added tokens and BOS", "[tokenizer]") {
  BpeTokenizer tok = make(llama3_json());
  CHECK(tok.vocab_size() == 263);
  CHECK(tok.encode(" hello") == Ids{258});               // whole vocab entry
  CHECK(tok.encode(" help") == Ids{32, 256, 'l', 'p'});  // (h,e) ranks before (Ġ,h)
  CHECK(tok.encode("<|begin_of_text|>hi") == Ids{259, 'h', 'i'});
  CHECK(tok.encode("a <mask> b") == Ids{'a', 261, 'b'});  // lstrip + rstrip take the spaces
  CHECK(tok.encode("cat") == Ids{262});
  CHECK(tok.encode("cats") == Ids{'c', 'a', 't', 's'});  // single_word: not inside a word
  CHECK(tok.encode("a cat.") == Ids{'a', ' ', 262, '.'});
  CHECK(tok.bos_id() == 259);
  CHECK(tok.eos_id() == 260);
  CHECK(tok.decode(Ids{259, 258, 260}, true) == " hello");
  CHECK(tok.decode(Ids{259, 258, 261}, true) == " hello<mask>");  // not special

  json j = llama3_json();
  j["model"]["ignore_merges"] = false;
  BpeTokenizer merged = make(j);
  CHECK(merged.encode(" hello") == Ids{32, 256, 'l', 'l', 'o'});
}

TEST_CASE("tokenizer: non-normalized added tokens are split out before normalized ones",
          "[tokenizer]") {
  json j = gpt2_json();
  // The ids in the file are not used: as in `tokenizers`, a content outside the vocab
  // takes the next id after the model's vocab size (262 here), in file order.
  j["added_tokens"] =
      json::array({added_token("ab", 500, false, true), added_token("bc", 501, false, false)});
  BpeTokenizer tok = make(j);
  CHECK(tok.token_id("ab") == 262);
  CHECK(tok.token_id("bc") == 263);
  // Leftmost-longest alone would take "ab"; the non-normalized "bc" is matched first.
  CHECK(tok.encode("abc") == Ids{'a', 263});
  CHECK(tok.encode("xab") == Ids{'x', 262});
}

TEST_CASE("tokenizer: tokenizer_config.json beside tokenizer.json names BOS and EOS",
          "[tokenizer]") {
  TempDir dir;
  json j = llama3_json();
  std::ofstream(dir.path() / "tokenizer.json") << j.dump();
  std::ofstream(dir.path() / "tokenizer_config.json")
      << R"({"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<mask>"}})";
  BpeTokenizer tok = BpeTokenizer::load(dir.path() / "tokenizer.json");
  CHECK(tok.bos_id() == 259);
  CHECK(tok.eos_id() == 261);
}

TEST_CASE("tokenizer: decode(encode(x)) == x for random UTF-8", "[tokenizer]") {
  const std::vector<std::string> parts = {"the",
                                          " the",
                                          "Hello",
                                          " world",
                                          "'s",
                                          "'LL",
                                          " ",
                                          "  ",
                                          "\t",
                                          "\n",
                                          "\r\n",
                                          "\r\n\r\n",
                                          "\xC2\xA0",
                                          "\xE3\x80\x80",
                                          "1",
                                          "22",
                                          "333",
                                          "4444",
                                          "55555",
                                          "666666",
                                          "7777777",
                                          "\xF0\x9F\x98\x80",
                                          "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
                                          "\xE6\xBC\xA2\xE5\xAD\x97",
                                          "e\xCC\x81",
                                          "\xD0\x9F\xD1\x80\xD0\xB8",
                                          "\xE0\xA4\xB9\xE0\xA4\xBF",
                                          "!?",
                                          "...",
                                          "(",
                                          "<|endoftext|>",
                                          "caf\xC3\xA9",
                                          "\xC5\xBF",
                                          "x"};
  BpeTokenizer gpt2 = make(gpt2_json());
  json lj = llama3_json();
  lj["added_tokens"] = json::array({added_token("<|begin_of_text|>", 259, true)});
  BpeTokenizer llama = make(lj);
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) text += parts[rng() % parts.size()];
    INFO(text);
    CHECK(gpt2.decode(gpt2.encode(text)) == text);
    CHECK(llama.decode(llama.encode(text)) == text);
  }
}

TEST_CASE("tokenizer: bad tokenizer files are usage errors naming the file and the problem",
          "[tokenizer]") {
  auto fails_with = [](const json& j, const std::string& what) {
    try {
      make(j);
      FAIL("no error for " << what);
    } catch (const ds::UsageError& e) {
      std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find("test.json") != std::string::npos);
      CHECK(msg.find(what) != std::string::npos);
    }
  };
  CHECK_THROWS_AS(BpeTokenizer::from_json("{not json", "x.json"), ds::UsageError);
  CHECK_THROWS_WITH(BpeTokenizer::from_json("{not json", "x.json"),
                    Catch::Contains("x.json: not JSON"));
  CHECK_THROWS_WITH(BpeTokenizer::load("/nonexistent/tokenizer.json"),
                    Catch::Contains("/nonexistent/tokenizer.json"));
  json j = gpt2_json();
  j["model"]["type"] = "Unigram";
  fails_with(j, "model type \"Unigram\"");
  j = gpt2_json();
  j["normalizer"] = {{"type", "NFC"}};
  fails_with(j, "normalizer \"NFC\"");
  j = gpt2_json();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  fails_with(j, "pre-tokenizer \"Whitespace\"");
  j = gpt2_json();
  j["pre_tokenizer"] = nullptr;
  fails_with(j, "pre_tokenizer is null");
  j = llama3_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  fails_with(j, "Split regex");
  j = gpt2_json();
  j["model"]["merges"].push_back("Ġ zz");
  fails_with(j, "names \"zz\", which is not in model.vocab");
  j = gpt2_json();
  j["model"]["merges"].push_back("a b c");
  fails_with(j, "not two tokens");
  j = gpt2_json();
  j["model"]["dropout"] = 0.1;
  fails_with(j, "dropout");
  j = gpt2_json();
  j["decoder"] = {{"type", "WordPiece"}};
  fails_with(j, "decoder \"WordPiece\"");
  j = gpt2_json();
  j["model"]["vocab"] = "oops";
  fails_with(j, "model.vocab");
}
