#include "tokenizer/bpe_tokenizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "tokenizer/unicode_class.h"
#include "util/error.h"

namespace ds::tokenizer {
namespace {

using json = nlohmann::json;

// ---- The GPT-2 byte-to-unicode table ---------------------------------------------
// Printable Latin-1 bytes stand for themselves; the other 68 bytes, in order, take the
// code points from U+0100 up.
struct ByteTable {
  std::array<std::string, 256> utf8;   // byte → its character as UTF-8
  std::array<int16_t, 0x144> byte_of;  // code point → byte, -1 where none
  ByteTable() {
    byte_of.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      char32_t cp = printable ? static_cast<char32_t>(b) : next++;
      if (cp < 0x80) {
        utf8[b] = std::string(1, static_cast<char>(cp));
      } else {
        utf8[b] = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
      }
      byte_of[cp] = static_cast<int16_t>(b);
    }
  }
};
const ByteTable& byte_table() {
  static const ByteTable table;
  return table;
}

// Bytes of a token string under the ByteLevel decoder: every character mapped back to
// its byte, or — when any character is outside the table — the token's own bytes.
void append_decoded_token(std::string_view token, std::string& out) {
  const ByteTable& t = byte_table();
  size_t start = out.size();
  for (size_t i = 0; i < token.size();) {
    Utf8Char c = decode_utf8(token, i);
    if (c.cp >= t.byte_of.size() || t.byte_of[c.cp] < 0) {
      out.resize(start);
      out.append(token);
      return;
    }
    out.push_back(static_cast<char>(t.byte_of[c.cp]));
    i += c.len;
  }
}

// Rust's String::from_utf8_lossy: each maximal ill-formed subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  for (size_t i = 0; i < n;) {
    unsigned char b = p[i];
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    size_t k = 1;
    if (need > 0 && i + 1 < n && p[i + 1] >= lo && p[i + 1] <= hi) {
      k = 2;
      while (k <= need && i + k < n && (p[i + k] & 0xC0) == 0x80) ++k;
    }
    if (need > 0 && k == need + 1) {
      out.append(s.substr(i, k));
    } else {
      out.append("\xEF\xBF\xBD");
    }
    i += k;
  }
  return out;
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Leftmost-longest matching of added tokens (what the Aho-Corasick automaton in
// `tokenizers` computes): at the first position where any token matches, the longest.
class AddedMatcher {
 public:
  void add(const std::string& content, int index) {
    auto& list = by_first_[static_cast<unsigned char>(content[0])];
    list.push_back({content, index});
    std::stable_sort(list.begin(), list.end(), [](const Entry& a, const Entry& b) {
      return a.content.size() > b.content.size();
    });
    empty_ = false;
  }
  bool empty() const { return empty_; }
  // The next match at or after `from`: {start, end, index}, or start == npos.
  struct Match {
    size_t start, end;
    int index;
  };
  Match find(std::string_view s, size_t from) const {
    for (size_t i = from; i < s.size(); ++i) {
      const auto& list = by_first_[static_cast<unsigned char>(s[i])];
      for (const Entry& e : list) {
        if (s.compare(i, e.content.size(), e.content) == 0) {
          return {i, i + e.content.size(), e.index};
        }
      }
    }
    return {std::string_view::npos, 0, -1};
  }

 private:
  struct Entry {
    std::string content;
    int index;
  };
  std::array<std::vector<Entry>, 256> by_first_;
  bool empty_ = true;
};

// One step of the pre-tokenizer pipeline.
struct Step {
  bool byte_level = false;  // else a Split with `pattern`
  SplitPattern pattern = SplitPattern::kGpt2;
  bool add_prefix_space = false;
  bool use_regex = false;
};

constexpr size_t kMaxCachedPiece = 256;  // bytes; longer pieces are rare and not cached
constexpr size_t kMaxCacheEntries = 1 << 18;

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  uint32_t len;  // bytes; 0 once merged into its left neighbour
};
struct Candidate {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
};
// Heap order: lowest rank first, then leftmost.
bool heap_after(const Candidate& a, const Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

}  // namespace

struct BpeTokenizer::Impl {
  std::string source;
  // Model.
  StringMap vocab;
  std::vector<const std::string*> model_token;  // id → vocab key, nullptr where none
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a, b) → (rank, id)
  std::optional<std::string> unk_token, prefix, suffix;
  bool fuse_unk = false, byte_fallback = false, ignore_merges = false;
  std::array<int32_t, 256> byte_id{};  // id of each byte's character, -1 if none
  // Pipeline.
  std::vector<Step> steps;
  bool byte_level_decoder = false;
  // Added vocabulary.
  std::vector<AddedToken> added;
  StringMap added_by_content;
  std::unordered_map<int32_t, int> added_by_id;  // id → index in `added`
  std::unordered_set<std::string, StringHash, std::equal_to<>> special;
  AddedMatcher raw_matcher, normalized_matcher;
  int32_t vocab_size = 0;
  std::optional<int32_t> bos, eos;
  // Cache of piece (raw bytes) → ids, in one arena.
  mutable std::mutex mu;
  mutable std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, StringHash,
                             std::equal_to<>>
      cache;
  mutable std::vector<int32_t> arena;

  [[noreturn]] void fail(const std::string& what, const std::string& hint = "") const {
    throw UsageError(fmt::format("{}: {}", source, what), hint);
  }

  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::optional<int32_t> vocab_id(std::string_view s) const {
    auto it = vocab.find(s);
    if (it == vocab.end()) return std::nullopt;
    return it->second;
  }

  void load_model(const json& m);
  void load_pre_tokenizer(const json& p, const std::string& where);
  void load_added(const json& list);
  void load_special_ids(const json& root, const std::filesystem::path* config);

  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void run_steps(size_t k, std::string_view piece, PieceSink sink) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  template <class OnText, class OnToken>
  void split_added(const AddedMatcher& m, std::string_view s, OnText on_text,
                   OnToken on_token) const;
};

// ---- Loading ----------------------------------------------------------------------

namespace {

bool get_bool(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return it->get<bool>();
}

std::optional<std::string> get_string(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<std::string>();
}

std::string type_of(const json& j) {
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string("(no type)");
}

}  // namespace

void BpeTokenizer::Impl::load_model(const json& m) {
  if (!m.is_object()) fail("\"model\" is missing or not an object");
  std::string type = m.contains("type") ? m.at("type").get<std::string>() : "BPE";
  if (type != "BPE") {
    fail(fmt::format("model type \"{}\" is not supported (only \"BPE\")", type),
         "only byte-level BPE tokenizers (GPT-2, Llama 3 style) are supported");
  }
  if (!m.contains("vocab") || !m.at("vocab").is_object()) fail("model.vocab is missing");
  if (!m.contains("merges") || !m.at("merges").is_array()) fail("model.merges is missing");
  if (auto it = m.find("dropout"); it != m.end() && !it->is_null() && it->get<double>() != 0.0) {
    fail("model.dropout is set: BPE dropout is random and not supported",
         "set \"dropout\": null for deterministic encoding");
  }
  unk_token = get_string(m, "unk_token");
  prefix = get_string(m, "continuing_subword_prefix");
  suffix = get_string(m, "end_of_word_suffix");
  fuse_unk = get_bool(m, "fuse_unk", false);
  byte_fallback = get_bool(m, "byte_fallback", false);
  ignore_merges = get_bool(m, "ignore_merges", false);

  int32_t max_id = -1;
  for (const auto& [token, id_json] : m.at("vocab").items()) {
    int64_t id = id_json.get<int64_t>();
    if (id < 0 || id > INT32_MAX - 1)
      fail(fmt::format("model.vocab[\"{}\"] = {} is not a valid id", token, id));
    vocab[token] = static_cast<int32_t>(id);
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  model_token.assign(static_cast<size_t>(max_id + 1), nullptr);
  for (const auto& [token, id] : vocab) {
    if (model_token[id] == nullptr) model_token[id] = &token;
  }
  vocab_size = max_id + 1;

  const ByteTable& t = byte_table();
  for (int b = 0; b < 256; ++b) byte_id[b] = vocab_id(t.utf8[b]).value_or(-1);

  // Merges: "a b" strings or ["a", "b"] pairs; the rank is the position; a later
  // duplicate replaces an earlier one (as collecting into a map does in `tokenizers`).
  size_t prefix_len = prefix ? prefix->size() : 0;
  const json& list = m.at("merges");
  merges.reserve(list.size());
  int32_t rank = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& e = list[i];
    std::string a, b;
    if (e.is_string()) {
      const std::string& line = e.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;
      size_t sp = line.find(' ');
      if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos) {
        fail(fmt::format("model.merges[{}] \"{}\" is not two tokens separated by one space", i,
                         line));
      }
      a = line.substr(0, sp);
      b = line.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      fail(fmt::format("model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]", i));
    }
    auto ia = vocab_id(a), ib = vocab_id(b);
    if (!ia || !ib) {
      fail(
          fmt::format("model.merges[{}] names \"{}\", which is not in model.vocab", i, ia ? b : a));
    }
    std::string merged = a + (b.size() >= prefix_len ? b.substr(prefix_len) : std::string());
    auto im = vocab_id(merged);
    if (!im) {
      fail(fmt::format("model.merges[{}] makes \"{}\", which is not in model.vocab", i, merged));
    }
    merges[pair_key(*ia, *ib)] = {rank, *im};
    ++rank;
  }
}

void BpeTokenizer::Impl::load_pre_tokenizer(const json& p, const std::string& where) {
  std::string type = type_of(p);
  if (type == "Sequence") {
    const json& list = p.at("pretokenizers");
    for (size_t i = 0; i < list.size(); ++i) {
      load_pre_tokenizer(list[i], fmt::format("{}.pretokenizers[{}]", where, i));
    }
    return;
  }
  Step step;
  if (type == "ByteLevel") {
    step.byte_level = true;
    step.add_prefix_space = get_bool(p, "add_prefix_space", true);
    step.use_regex = get_bool(p, "use_regex", true);
  } else if (type == "Split") {
    const json& pattern = p.at("pattern");
    std::string regex;
    if (pattern.contains("Regex")) {
      regex = pattern.at("Regex").get<std::string>();
    } else {
      fail(fmt::format("{}: Split with a String pattern is not supported", where),
           "supported: the GPT-2 and Llama 3 regexes");
    }
    if (regex == kLlama3Pattern) {
      step.pattern = SplitPattern::kLlama3;
    } else if (regex == kGpt2Pattern) {
      step.pattern = SplitPattern::kGpt2;
    } else {
      fail(fmt::format("{}: the Split regex {} is not supported", where, json(regex).dump()),
           "supported: the GPT-2 and Llama 3 pre-tokenizer regexes (docs/tokenizer.md)");
    }
    std::string behavior = p.value("behavior", std::string("Isolated"));
    if (behavior != "Isolated") {
      fail(fmt::format("{}: Split behavior \"{}\" is not supported (only \"Isolated\")", where,
                       behavior));
    }
    if (get_bool(p, "invert", false))
      fail(fmt::format("{}: Split with invert is not supported", where));
  } else {
    fail(fmt::format("{}: pre-tokenizer \"{}\" is not supported", where, type),
         "supported: ByteLevel, and Sequence of Split (GPT-2/Llama 3 regex) + ByteLevel");
  }
  if (!steps.empty() && steps.back().byte_level) {
    fail(fmt::format("{}: nothing may follow the ByteLevel pre-tokenizer", where));
  }
  steps.push_back(step);
}

void BpeTokenizer::Impl::load_added(const json& list) {
  // Ids as `tokenizers` assigns them when it loads the file: a content already in the
  // vocab keeps that id, any other takes the next id after the model's vocab size.
  int32_t next_id = static_cast<int32_t>(vocab.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const json& e = list[i];
    AddedToken t;
    t.content = e.at("content").get<std::string>();
    if (t.content.empty()) continue;
    t.single_word = get_bool(e, "single_word", false);
    t.lstrip = get_bool(e, "lstrip", false);
    t.rstrip = get_bool(e, "rstrip", false);
    t.special = get_bool(e, "special", false);
    t.normalized = get_bool(e, "normalized", !t.special);
    if (auto it = added_by_content.find(t.content); it != added_by_content.end()) {
      t.id = it->second;
    } else if (auto v = vocab_id(t.content)) {
      t.id = *v;
    } else {
      t.id = next_id++;
    }
    added_by_content[t.content] = t.id;
    if (t.special) special.insert(t.content);
    int index = static_cast<int>(added.size());
    if (auto it = added_by_id.find(t.id); it != added_by_id.end()) {
      added[it->second] = t;  // the same token listed again: the later entry wins
      index = it->second;
    } else {
      added_by_id[t.id] = index;
      added.push_back(t);
    }
    vocab_size = std::max(vocab_size, t.id + 1);
  }
  for (size_t i = 0; i < added.size(); ++i) {
    (added[i].normalized ? normalized_matcher : raw_matcher)
        .add(added[i].content, static_cast<int>(i));
  }
}

namespace {

// A special token named by tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return it->at("content").get<std::string>();
  return std::nullopt;
}

// The TemplateProcessing "single" template: the special token before $A and after it.
void template_specials(const json& pp, std::optional<std::string>& before,
                       std::optional<std::string>& after) {
  if (!pp.is_object()) return;
  std::string type = type_of(pp);
  if (type == "Sequence" && pp.contains("processors")) {
    for (const json& p : pp.at("processors")) template_specials(p, before, after);
    return;
  }
  if (type != "TemplateProcessing" || !pp.contains("single")) return;
  bool seen_a = false;
  for (const json& item : pp.at("single")) {
    if (item.contains("Sequence")) {
      seen_a = true;
    } else if (item.contains("SpecialToken")) {
      std::string id = item.at("SpecialToken").at("id").get<std::string>();
      if (!seen_a && !before) before = id;
      if (seen_a) after = id;
    }
  }
}

}  // namespace

void BpeTokenizer::Impl::load_special_ids(const json& root, const std::filesystem::path* config) {
  auto id_of = [&](const std::string& token) -> std::optional<int32_t> {
    if (auto it = added_by_content.find(token); it != added_by_content.end()) return it->second;
    return vocab_id(token);
  };
  std::optional<std::string> bos_token, eos_token;
  if (config != nullptr && std::filesystem::exists(*config)) {
    std::ifstream in(*config);
    json cfg = json::parse(in, nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object()) {
      throw UsageError(fmt::format("{}: not JSON", config->string()));
    }
    bos_token = config_token(cfg, "bos_token");
    eos_token = config_token(cfg, "eos_token");
  }
  if (!bos_token || !eos_token) {
    std::optional<std::string> before, after;
    if (root.contains("post_processor"))
      template_specials(root.at("post_processor"), before, after);
    if (!bos_token) bos_token = before;
    if (!eos_token) eos_token = after;
  }
  auto known = [&](std::initializer_list<const char*> names) -> std::optional<std::string> {
    for (const char* n : names) {
      if (special.count(std::string_view(n))) return std::string(n);
    }
    return std::nullopt;
  };
  if (!bos_token)
    bos_token = known({"<|begin_of_text|>", "<s>", "<|startoftext|>", "<|endoftext|>"});
  if (!eos_token) eos_token = known({"<|end_of_text|>", "</s>", "<|endoftext|>"});
  if (bos_token) bos = id_of(*bos_token);
  if (eos_token) eos = id_of(*eos_token);
}

BpeTokenizer::BpeTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

BpeTokenizer BpeTokenizer::load(const std::filesystem::path& tokenizer_json) {
  std::ifstream in(tokenizer_json, std::ios::binary);
  if (!in) {
    throw UsageError(fmt::format("{}: cannot read the tokenizer file", tokenizer_json.string()),
                     "pass the path of a Hugging Face tokenizer.json");
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  std::filesystem::path config = tokenizer_json.parent_path() / "tokenizer_config.json";
  return BpeTokenizer(parse(buf.str(), tokenizer_json.string(), &config));
}

BpeTokenizer BpeTokenizer::from_json(std::string_view json_text, const std::string& source) {
  return BpeTokenizer(parse(json_text, source, nullptr));
}

std::unique_ptr<BpeTokenizer::Impl> BpeTokenizer::parse(std::string_view text,
                                                        const std::string& source,
                                                        const std::filesystem::path* config) {
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  json root = json::parse(text.begin(), text.end(), nullptr, false);
  if (root.is_discarded()) impl->fail("not JSON", "pass a Hugging Face tokenizer.json");
  if (!root.is_object()) impl->fail("not a tokenizer.json (the top level is not an object)");
  try {
    if (auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
      impl->fail(fmt::format("normalizer \"{}\" is not supported (only null)", type_of(*it)),
                 "byte-level BPE tokenizers (GPT-2, Llama 3) have no normalizer");
    }
    impl->load_model(root.contains("model") ? root.at("model") : json());
    auto pt = root.find("pre_tokenizer");
    if (pt == root.end() || pt->is_null()) {
      impl->fail(
          "pre_tokenizer is null: only byte-level BPE (a ByteLevel pre-tokenizer) is supported");
    }
    impl->load_pre_tokenizer(*pt, "pre_tokenizer");
    if (!impl->steps.back().byte_level) {
      impl->fail("pre_tokenizer has no ByteLevel step: only byte-level BPE is supported");
    }
    if (auto it = root.find("decoder"); it != root.end() && !it->is_null()) {
      if (type_of(*it) != "ByteLevel") {
        impl->fail(
            fmt::format("decoder \"{}\" is not supported (only ByteLevel or null)", type_of(*it)));
      }
      impl->byte_level_decoder = true;
    }
    if (auto it = root.find("added_tokens"); it != root.end() && !it->is_null()) {
      impl->load_added(*it);
    }
    impl->load_special_ids(root, config);
  } catch (const json::exception& e) {
    impl->fail(fmt::format("malformed tokenizer.json: {}", e.what()));
  }
  return impl;
}

// ---- Encoding ---------------------------------------------------------------------

// Splits s around the matches of one added-token matcher, as `tokenizers` does:
// single_word drops matches inside a word, lstrip/rstrip take the white space beside
// the token into it, and the pieces between go to on_text (never empty).
template <class OnText, class OnToken>
void BpeTokenizer::Impl::split_added(const AddedMatcher& m, std::string_view s, OnText on_text,
                                     OnToken on_token) const {
  if (m.empty()) {
    if (!s.empty()) on_text(s);
    return;
  }
  size_t done = 0;  // end of what has been handed on
  for (auto mt = m.find(s, 0); mt.start != std::string_view::npos; mt = m.find(s, mt.end)) {
    const AddedToken& t = added[mt.index];
    size_t start = mt.start, stop = mt.end;
    if (t.single_word) {
      bool word_before = start > 0 && is_word_char(decode_utf8_before(s, start).cp);
      bool word_after = stop < s.size() && is_word_char(decode_utf8(s, stop).cp);
      if (word_before || word_after) continue;
    }
    if (t.lstrip) {
      size_t k = start;
      while (k > 0) {
        Utf8Char c = decode_utf8_before(s, k);
        if (c.cp == kInvalidCodePoint || char_class(c.cp) != CharClass::kSpace) break;
        k -= c.len;
      }
      start = std::max(k, done);
    }
    if (t.rstrip) {
      while (stop < s.size()) {
        Utf8Char c = decode_utf8(s, stop);
        if (c.cp == kInvalidCodePoint || char_class(c.cp) != CharClass::kSpace) break;
        stop += c.len;
      }
    }
    if (done < start) on_text(s.substr(done, start - done));
    on_token(t.id);
    done = stop;
  }
  if (done < s.size()) on_text(s.substr(done));
}

void BpeTokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  auto token = [&](int32_t id) { out.push_back(id); };
  auto pieces = [&](std::string_view p) { encode_piece(p, out); };
  auto normalized_pass = [&](std::string_view segment) {
    // The normalizer is null, so the "normalized" text is the segment itself.
    split_added(
        normalized_matcher, segment, [&](std::string_view t) { run_steps(0, t, pieces); }, token);
  };
  split_added(raw_matcher, text, normalized_pass, token);
}

void BpeTokenizer::Impl::run_steps(size_t k, std::string_view piece, PieceSink sink) const {
  if (piece.empty()) return;
  if (k == steps.size()) {
    sink(piece);
    return;
  }
  const Step& step = steps[k];
  auto next = [&](std::string_view p) { run_steps(k + 1, p, sink); };
  if (!step.byte_level) {
    split(step.pattern, piece, next);
    return;
  }
  std::string prefixed;
  if (step.add_prefix_space && piece.front() != ' ') {
    prefixed.reserve(piece.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(piece);
    piece = prefixed;
  }
  if (step.use_regex) {
    split(SplitPattern::kGpt2, piece, next);
  } else {
    next(piece);
  }
}

void BpeTokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  bool cacheable = piece.size() <= kMaxCachedPiece;
  if (cacheable) {
    std::lock_guard lock(mu);
    if (auto it = cache.find(piece); it != cache.end()) {
      out.insert(out.end(), arena.begin() + it->second.first,
                 arena.begin() + it->second.first + it->second.second);
      return;
    }
  }
  size_t first = out.size();
  bpe(piece, out);
  if (cacheable) {
    std::lock_guard lock(mu);
    if (cache.size() < kMaxCacheEntries && !cache.contains(piece)) {
      cache.emplace(std::string(piece),
                    std::pair<uint32_t, uint32_t>(static_cast<uint32_t>(arena.size()),
                                                  static_cast<uint32_t>(out.size() - first)));
      arena.insert(arena.end(), out.begin() + first, out.end());
    }
  }
}

// BPE on one pre-token, given as raw bytes: each byte starts as the token of its
// byte-level character, then merges apply lowest rank first (leftmost on ties).
void BpeTokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  const ByteTable& table = byte_table();
  thread_local std::string mapped;
  if (ignore_merges) {  // a pre-token that is a whole vocab entry is emitted as it is
    mapped.clear();
    for (char c : piece) mapped += table.utf8[static_cast<unsigned char>(c)];
    if (auto id = vocab_id(mapped)) {
      out.push_back(*id);
      return;
    }
  }

  thread_local std::vector<Symbol> sym;
  sym.clear();
  auto add = [&](int32_t id, uint32_t len) {
    int32_t n = static_cast<int32_t>(sym.size());
    if (n > 0) sym.back().next = n;
    sym.push_back({id, n - 1, -1, len});
  };
  int32_t unk = -1;  // a pending unknown token (its id), fused or not
  uint32_t unk_len = 0;
  const bool plain = !prefix && !suffix;
  for (size_t k = 0; k < piece.size(); ++k) {
    auto b = static_cast<unsigned char>(piece[k]);
    int32_t id = byte_id[b];
    std::string s;
    if (!plain || id < 0) {
      s = table.utf8[b];
      if (k > 0 && prefix) s = *prefix + s;
      if (k + 1 == piece.size() && suffix) s += *suffix;
      id = vocab_id(s).value_or(-1);
    }
    if (id >= 0) {
      if (unk >= 0) {
        add(unk, unk_len);
        unk = -1;
      }
      add(id, 1);
      continue;
    }
    if (byte_fallback) {  // "<0xXX>" tokens for the bytes of the looked-up string
      std::vector<int32_t> fb;
      for (char c : s) {
        auto f = vocab_id(fmt::format("<0x{:02X}>", static_cast<unsigned char>(c)));
        if (!f) break;
        fb.push_back(*f);
      }
      if (fb.size() == s.size()) {
        for (int32_t f : fb) add(f, 1);
        continue;
      }
    }
    if (unk_token) {
      auto unk_id = vocab_id(*unk_token);
      if (!unk_id) fail(fmt::format("model.unk_token \"{}\" is not in model.vocab", *unk_token));
      if (unk >= 0 && fuse_unk) {
        unk_len += 1;
      } else {
        if (unk >= 0) add(unk, unk_len);
        unk = *unk_id;
        unk_len = 1;
      }
    }
  }
  if (unk >= 0) add(unk, unk_len);

  if (sym.size() > 1) {
    thread_local std::vector<Candidate> heap;
    heap.clear();
    auto lookup = [&](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
      auto it = merges.find(pair_key(a, b));
      return it == merges.end() ? nullptr : &it->second;
    };
    auto push = [&](int32_t pos, const std::pair<int32_t, int32_t>& m) {
      heap.push_back({m.first, pos, m.second});
      std::push_heap(heap.begin(), heap.end(), heap_after);
    };
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      if (auto m = lookup(sym[i].id, sym[i + 1].id)) push(static_cast<int32_t>(i), *m);
    }
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), heap_after);
      Candidate top = heap.back();
      heap.pop_back();
      Symbol& left = sym[top.pos];
      if (left.len == 0 || left.next < 0) continue;
      Symbol right = sym[left.next];
      // A stale entry: the pair at this position is no longer the one it was made for.
      auto now = lookup(left.id, right.id);
      if (now == nullptr || now->second != top.new_id) continue;
      int32_t right_pos = left.next;
      left.id = top.new_id;
      left.len += right.len;
      left.next = right.next;
      sym[right_pos].len = 0;
      if (right.next >= 0) sym[right.next].prev = top.pos;
      if (left.prev >= 0) {
        if (auto m = lookup(sym[left.prev].id, left.id)) push(left.prev, *m);
      }
      if (left.next >= 0) {
        if (auto m = lookup(left.id, sym[left.next].id)) push(top.pos, *m);
      }
    }
  }
  for (const Symbol& s : sym) {
    if (s.len != 0) out.push_back(s.id);
  }
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  impl_->encode_text(text, out);
  return out;
}

void BpeTokenizer::encode_append(std::string_view text, std::vector<int32_t>& out) const {
  impl_->encode_text(text, out);
}

std::vector<std::string> BpeTokenizer::pre_tokenize(std::string_view text) const {
  std::vector<std::string> out;
  auto sink = [&](std::string_view p) { out.emplace_back(p); };
  impl_->run_steps(0, text, sink);
  return out;
}

// ---- Decoding and look-ups ---------------------------------------------------------

std::optional<std::string_view> BpeTokenizer::id_to_token(int32_t id) const {
  if (auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end()) {
    return std::string_view(impl_->added[it->second].content);
  }
  if (id >= 0 && static_cast<size_t>(id) < impl_->model_token.size() &&
      impl_->model_token[id] != nullptr) {
    return std::string_view(*impl_->model_token[id]);
  }
  return std::nullopt;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    auto token = id_to_token(id);
    if (!token) continue;
    if (skip_special && impl_->special.contains(*token)) continue;
    if (impl_->byte_level_decoder) {
      append_decoded_token(*token, bytes);
    } else {  // no decoder: `tokenizers` joins the tokens with spaces
      if (!first) bytes.push_back(' ');
      bytes.append(*token);
    }
    first = false;
  }
  return impl_->byte_level_decoder ? utf8_lossy(bytes) : bytes;
}

std::optional<int32_t> BpeTokenizer::token_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(token); it != impl_->added_by_content.end()) {
    return it->second;
  }
  return impl_->vocab_id(token);
}

int32_t BpeTokenizer::vocab_size() const { return impl_->vocab_size; }
std::optional<int32_t> BpeTokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> BpeTokenizer::eos_id() const { return impl_->eos; }
const std::vector<AddedToken>& BpeTokenizer::added_tokens() const { return impl_->added; }

std::string_view byte_to_unicode(uint8_t b) { return byte_table().utf8[b]; }

}  // namespace ds::tokenizer
