#include "data/documents.h"

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

#include "tokenizer/bpe_tokenizer.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"

namespace ds::data {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// FNV-1a, 64 bit: a stable hash for cache names (not for security).
class Fnv {
 public:
  Fnv& add(std::string_view bytes) {
    for (const char c : bytes) {
      h_ ^= static_cast<unsigned char>(c);
      h_ *= 0x100000001B3ULL;
    }
    return *this;
  }
  // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
  Fnv& field(std::string_view bytes) {
    add(std::to_string(bytes.size())).add(":");
    return add(bytes);
  }
  Fnv& number(uint64_t v) { return field(std::to_string(v)); }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xCBF29CE484222325ULL;
};

std::string read_or_empty(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return "";
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

[[noreturn]] void bad_line(const std::string& file, int64_t line, const std::string& problem,
                           const std::string& hint = "") {
  throw UsageError(fmt::format("data file '{}' line {}: {}", file, line, problem), hint);
}

std::string_view json_type(const Json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "a string";
}

Json parse_record(std::string_view text, const std::string& file, int64_t line) {
  Json record;
  try {
    record = Json::parse(text);
  } catch (const Json::parse_error& e) {
    bad_line(file, line, fmt::format("not valid JSON (error at byte {} of the line)", e.byte),
             "each line of a JSON-lines file must hold one JSON object");
  }
  if (!record.is_object()) {
    bad_line(file, line, fmt::format("expected a JSON object, found {}", json_type(record)),
             "each line of a JSON-lines file must hold one JSON object");
  }
  return record;
}

// Whether every field of `t` is a non-empty string in `record` (an alternative that fits);
// a field of the wrong type is an error in any alternative.
bool fits(const config::TextTemplate& t, const Json& record, const std::string& file,
          int64_t line) {
  for (const auto& piece : t.pieces) {
    if (!piece.is_field) continue;
    const auto it = record.find(piece.text);
    if (it == record.end() || it->is_null()) return false;
    if (!it->is_string()) {
      bad_line(file, line,
               fmt::format("field '{}' is {}, not a string", piece.text, json_type(*it)));
    }
    if (it->get_ref<const std::string&>().empty()) return false;
  }
  return true;
}

std::string render(const std::vector<config::TextTemplate>& alternatives, const Json& record,
                   const std::string& file, int64_t line) {
  DS_CHECK(!alternatives.empty(), "a template part with no alternative");
  const config::TextTemplate* chosen = &alternatives.back();
  for (const auto& t : alternatives) {
    if (fits(t, record, file, line)) {
      chosen = &t;
      break;
    }
  }
  std::string out;
  for (const auto& piece : chosen->pieces) {
    if (!piece.is_field) {
      out += piece.text;
      continue;
    }
    const auto it = record.find(piece.text);
    if (it == record.end() || it->is_null()) {
      bad_line(file, line,
               fmt::format("the record has no field '{}', which the template \"{}\" needs",
                           piece.text, chosen->source),
               alternatives.size() > 1
                   ? "the last alternative of a template part must fit every record"
                   : "add the field, or give the template a list of alternatives, the last "
                     "one without it");
    }
    if (!it->is_string()) {
      bad_line(file, line,
               fmt::format("field '{}' is {}, not a string", piece.text, json_type(*it)));
    }
    out += it->get_ref<const std::string&>();
  }
  return out;
}

void check_ids(const std::vector<int32_t>& tokens, size_t from, int64_t vocab_size,
               const std::string& file, int64_t line) {
  for (size_t i = from; i < tokens.size(); ++i) {
    if (tokens[i] >= vocab_size) {
      const std::string where = line > 0 ? fmt::format(" line {}", line) : "";
      throw UsageError(
          fmt::format("data file '{}'{}: token {} is not below the model's vocab_size {}", file,
                      where, tokens[i], vocab_size),
          "use a tokenizer whose vocabulary fits model.vocab_size, or raise vocab_size");
    }
  }
}

// Appends one document: BOS + prompt | response + EOS.
void add_document(Documents& docs, const DataTokenizer& tok, std::string_view prompt,
                  std::string_view response, int64_t line, const std::string& file,
                  int64_t vocab_size) {
  const size_t begin = docs.tokens.size();
  if (tok.bos()) docs.tokens.push_back(*tok.bos());
  tok.encode_append(prompt, docs.tokens);
  const auto prompt_size = static_cast<int64_t>(docs.tokens.size() - begin);
  tok.encode_append(response, docs.tokens);
  docs.tokens.push_back(tok.eos());
  check_ids(docs.tokens, begin, vocab_size, file, line);
  docs.ends.push_back(static_cast<int64_t>(docs.tokens.size()));
  docs.prompt_sizes.push_back(prompt_size);
  docs.lines.push_back(line);
}

Documents tokenize(const std::string& file, const std::string& bytes, bool jsonl,
                   const config::DataConfig& data, const DataTokenizer& tok, int64_t vocab_size) {
  Documents docs;
  if (!jsonl) {
    add_document(docs, tok, "", bytes, 0, file, vocab_size);
    return docs;
  }
  int64_t line = 0;
  for (size_t pos = 0; pos < bytes.size();) {
    size_t end = bytes.find('\n', pos);
    if (end == std::string::npos) end = bytes.size();
    const std::string_view text(bytes.data() + pos, end - pos);
    pos = end + 1;
    ++line;
    if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const Json record = parse_record(text, file, line);
    if (data.text_template) {
      const auto& t = *data.text_template;
      const std::string prompt = t.prompt.empty() ? "" : render(t.prompt, record, file, line);
      add_document(docs, tok, prompt, render(t.response, record, file, line), line, file,
                   vocab_size);
      continue;
    }
    const auto it = record.find(data.field);
    if (it == record.end()) {
      bad_line(file, line, fmt::format("the record has no field '{}'", data.field),
               "data.field names the string field that holds each document's text");
    }
    if (!it->is_string()) {
      bad_line(file, line,
               fmt::format("field '{}' is {}, not a string", data.field, json_type(*it)));
    }
    add_document(docs, tok, "", it->get_ref<const std::string&>(), line, file, vocab_size);
  }
  return docs;
}

// Cache file: "DSTOKENS", u64 key, i64 documents D, i64 tokens N, D x i64 ends,
// D x i64 prompt sizes, D x i64 lines, N x i32 tokens (host byte order).
constexpr std::string_view kCacheMagic = "DSTOKENS";

template <typename T>
void put(std::string& out, const T* values, size_t count) {
  out.append(reinterpret_cast<const char*>(values), count * sizeof(T));
}

std::string encode_cache(const Documents& docs, uint64_t key) {
  std::string out(kCacheMagic);
  const auto d = static_cast<int64_t>(docs.ends.size());
  const auto n = static_cast<int64_t>(docs.tokens.size());
  put(out, &key, 1);
  put(out, &d, 1);
  put(out, &n, 1);
  put(out, docs.ends.data(), docs.ends.size());
  put(out, docs.prompt_sizes.data(), docs.prompt_sizes.size());
  put(out, docs.lines.data(), docs.lines.size());
  put(out, docs.tokens.data(), docs.tokens.size());
  return out;
}

// The documents in a cache file, or nullopt (with the reason) when it is not usable.
std::optional<Documents> decode_cache(const std::string& bytes, uint64_t key, int64_t vocab_size,
                                      std::string& why) {
  size_t at = 0;
  const auto take = [&](void* out, size_t size) {
    if (bytes.size() - at < size) return false;
    std::memcpy(out, bytes.data() + at, size);
    at += size;
    return true;
  };
  if (bytes.compare(0, kCacheMagic.size(), kCacheMagic) != 0) {
    why = "not a token cache";
    return std::nullopt;
  }
  at = kCacheMagic.size();
  uint64_t stored = 0;
  int64_t d = 0, n = 0;
  if (!take(&stored, 8) || !take(&d, 8) || !take(&n, 8) || stored != key || d < 0 || n < 0 ||
      bytes.size() - at != static_cast<uint64_t>(d) * 24 + static_cast<uint64_t>(n) * 4) {
    why = "truncated or for other data";
    return std::nullopt;
  }
  Documents docs;
  docs.ends.resize(static_cast<size_t>(d));
  docs.prompt_sizes.resize(static_cast<size_t>(d));
  docs.lines.resize(static_cast<size_t>(d));
  docs.tokens.resize(static_cast<size_t>(n));
  take(docs.ends.data(), docs.ends.size() * 8);
  take(docs.prompt_sizes.data(), docs.prompt_sizes.size() * 8);
  take(docs.lines.data(), docs.lines.size() * 8);
  take(docs.tokens.data(), docs.tokens.size() * 4);
  int64_t previous = 0;
  for (int64_t k = 0; k < d; ++k) {
    const int64_t end = docs.ends[static_cast<size_t>(k)];
    const int64_t prompt = docs.prompt_sizes[static_cast<size_t>(k)];
    if (end <= previous || end > n || prompt < 0 || prompt >= end - previous) {
      why = "inconsistent document table";
      return std::nullopt;
    }
    previous = end;
  }
  if (previous != n) {
    why = "inconsistent document table";
    return std::nullopt;
  }
  for (const int32_t t : docs.tokens) {
    if (t < 0 || t >= vocab_size) {
      why = "a token outside the vocabulary";
      return std::nullopt;
    }
  }
  docs.from_cache = true;
  return docs;
}

uint64_t cache_key(const std::string& file, const std::string& bytes,
                   const config::DataConfig& data, const DataTokenizer& tok, bool jsonl) {
  Fnv h;
  h.field("dstrain token cache v1");
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0) {
    h.number(static_cast<uint64_t>(st.st_size));
    h.number(static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ULL +
             static_cast<uint64_t>(st.st_mtim.tv_nsec));
  }
  h.number(Fnv().add(bytes).value());
  h.number(tok.fingerprint());
  h.field(jsonl ? "jsonl" : "text");
  if (data.text_template) {
    for (const auto* part : {&data.text_template->prompt, &data.text_template->response}) {
      h.number(part->size());
      for (const auto& t : *part) h.field(t.source);
    }
  } else {
    h.field(data.field);
  }
  return h.value();
}

std::string cache_name(const std::string& file, uint64_t key) {
  return fmt::format("{}.{:016x}.tokens", file, key);
}

}  // namespace

DataTokenizer DataTokenizer::bytes() { return DataTokenizer(); }

DataTokenizer DataTokenizer::load(const std::string& tokenizer_json) {
  DataTokenizer t;
  t.bpe_ = std::make_unique<tokenizer::BpeTokenizer>(
      tokenizer::BpeTokenizer::load(fs::path(tokenizer_json)));
  t.path_ = tokenizer_json;
  t.bos_ = t.bpe_->bos_id();
  const auto eos = t.bpe_->eos_id();
  if (!eos) {
    throw UsageError(
        fmt::format("tokenizer '{}' has no EOS token, which ends each document", tokenizer_json),
        "name one as eos_token in a tokenizer_config.json beside tokenizer.json");
  }
  t.eos_ = *eos;
  t.vocab_size_ = t.bpe_->vocab_size();
  const fs::path config = fs::path(tokenizer_json).parent_path() / "tokenizer_config.json";
  t.fingerprint_ = Fnv().field(read_or_empty(tokenizer_json)).field(read_or_empty(config)).value();
  return t;
}

DataTokenizer::DataTokenizer(DataTokenizer&&) noexcept = default;
DataTokenizer& DataTokenizer::operator=(DataTokenizer&&) noexcept = default;
DataTokenizer::~DataTokenizer() = default;

void DataTokenizer::encode_append(std::string_view text, std::vector<int32_t>& out) const {
  if (bpe_) {
    bpe_->encode_append(text, out);
    return;
  }
  for (const char c : text) out.push_back(static_cast<unsigned char>(c));
}

std::string DataTokenizer::describe() const {
  if (!bpe_) return "bytes";
  return fmt::format("{} (vocabulary {}, EOS {}{})", path_, vocab_size_, eos_,
                     bos_ ? fmt::format(", BOS {}", *bos_) : "");
}

std::string render_template(const std::vector<config::TextTemplate>& alternatives,
                            const std::string& record_json, const std::string& file, int64_t line) {
  return render(alternatives, parse_record(record_json, file, line), file, line);
}

std::string cache_path(const std::string& file, const config::DataConfig& data,
                       const DataTokenizer& tok) {
  const std::string bytes = read_text_file(file, "data file");
  const bool jsonl = !data.field.empty() || data.text_template.has_value();
  return cache_name(file, cache_key(file, bytes, data, tok, jsonl));
}

Documents tokenize_file(const std::string& file, bool jsonl, const config::DataConfig& data,
                        const DataTokenizer& tok, int64_t vocab_size) {
  const std::string bytes = read_text_file(file, "data file");
  const uint64_t key = data.cache ? cache_key(file, bytes, data, tok, jsonl) : 0;
  const std::string cache = data.cache ? cache_name(file, key) : "";
  if (data.cache) {
    std::error_code ec;
    if (fs::is_regular_file(cache, ec)) {
      std::string why;
      if (auto docs = decode_cache(read_or_empty(cache), key, vocab_size, why)) {
        log::info("read {} documents ({} tokens) of {} from the cache {}", docs->count(),
                  docs->tokens.size(), file, cache);
        return std::move(*docs);
      }
      log::warn("ignoring the token cache {} ({}); tokenising {} again", cache, why, file);
    }
  }
  Documents docs = tokenize(file, bytes, jsonl, data, tok, vocab_size);
  log::info("tokenised {}: {} documents, {} tokens ({})", file, docs.count(), docs.tokens.size(),
            tok.describe());
  if (data.cache && docs.count() > 0) {
    try {
      write_file_atomic(cache, encode_cache(docs, key));
    } catch (const std::exception& e) {
      log::warn("could not write the token cache ({}); continuing without it", e.what());
    }
  }
  return docs;
}

}  // namespace ds::data
