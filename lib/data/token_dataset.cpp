#include "data/token_dataset.h"

#include <glob.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <system_error>

#include "data/documents.h"
#include "util/error.h"
#include "util/strings.h"

namespace ds::data {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void bad_file(const std::string& file, const std::string& problem,
                           const std::string& hint = "") {
  throw UsageError(fmt::format("data file '{}': {}", file, problem), hint);
}

bool has_glob_chars(std::string_view s) { return s.find_first_of("*?[") != std::string::npos; }

// The files a path or pattern names, sorted bytewise so the order never depends on locale.
std::vector<std::string> expand(const std::string& pattern) {
  if (pattern.empty()) {
    throw UsageError("no data file given", "set data.train in train.cfg");
  }
  std::vector<std::string> files;
  if (!has_glob_chars(pattern)) {
    files.push_back(pattern);
    return files;
  }
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  if (rc == GLOB_NOMATCH || (rc == 0 && files.empty())) {
    throw UsageError(fmt::format("data pattern '{}' matches no file", pattern),
                     "check the path; relative paths are taken from the train.cfg folder");
  }
  if (rc != 0) {
    throw UsageError(
        fmt::format("data pattern '{}' could not be expanded (glob error {})", pattern, rc));
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Opens `file` for reading and returns its size; every failure names the file.
std::ifstream open_data_file(const std::string& file, int64_t& size) {
  std::error_code ec;
  const fs::file_status status = fs::status(file, ec);
  if (ec || !fs::exists(status)) {
    bad_file(file, "no such file",
             "check the path; relative paths are taken from the train.cfg folder");
  }
  if (fs::is_directory(status)) bad_file(file, "is a directory, not a token file");
  size = static_cast<int64_t>(fs::file_size(file, ec));
  if (ec) bad_file(file, "cannot read its size: " + ec.message());
  std::ifstream in(file, std::ios::binary);
  if (!in) bad_file(file, fmt::format("cannot be opened: {}", std::strerror(errno)));
  if (size == 0) bad_file(file, "is empty");
  return in;
}

void read_exact(std::ifstream& in, const std::string& file, void* out, int64_t bytes) {
  in.read(static_cast<char*>(out), static_cast<std::streamsize>(bytes));
  if (in.gcount() != static_cast<std::streamsize>(bytes)) {
    bad_file(file, fmt::format("read failed after {} of {} bytes", in.gcount(), bytes));
  }
}

[[noreturn]] void bad_token(const std::string& file, int64_t index, uint64_t id,
                            int64_t vocab_size) {
  bad_file(file,
           fmt::format("token {} (at position {} of the file) is not below the model's "
                       "vocab_size {}",
                       id, index, vocab_size),
           "the data was tokenized for a larger vocabulary than model.vocab_size; use the "
           "matching tokenizer or raise vocab_size");
}

void append_text(const std::string& file, int64_t vocab_size, std::vector<int32_t>& out) {
  int64_t size = 0;
  std::ifstream in = open_data_file(file, size);
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  read_exact(in, file, bytes.data(), size);
  const size_t base = out.size();
  out.resize(base + bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] >= vocab_size) bad_token(file, static_cast<int64_t>(i), bytes[i], vocab_size);
    out[base + i] = bytes[i];
  }
}

template <typename T>
void convert_tokens(const std::string& file, const std::vector<T>& raw, int64_t vocab_size,
                    std::vector<int32_t>& out) {
  const size_t base = out.size();
  out.resize(base + raw.size());
  const uint64_t limit = static_cast<uint64_t>(vocab_size);
  for (size_t i = 0; i < raw.size(); ++i) {
    if (static_cast<uint64_t>(raw[i]) >= limit) {
      bad_token(file, static_cast<int64_t>(i), raw[i], vocab_size);
    }
    out[base + i] = static_cast<int32_t>(raw[i]);
  }
}

void append_shard(const std::string& file, int64_t vocab_size, std::vector<int32_t>& out) {
  int64_t size = 0;
  std::ifstream in = open_data_file(file, size);
  const std::string shard_hint =
      "an llm.c token shard starts with a 1024-byte header (magic 20240520 version 1 for "
      "uint16 tokens, or 20240801 version 7 for uint32); use data.format: text for a text file";
  if (size < kShardHeaderBytes) {
    bad_file(file,
             fmt::format("is {} bytes, too short for the {}-byte llm.c shard header", size,
                         kShardHeaderBytes),
             shard_hint);
  }
  std::array<int32_t, kShardHeaderBytes / 4> header{};
  read_exact(in, file, header.data(), kShardHeaderBytes);
  const int32_t magic = header[0];
  const int32_t version = header[1];
  int64_t token_bytes = 0;
  int32_t expected_version = 0;
  if (magic == kShardMagicU16) {
    token_bytes = 2;
    expected_version = kShardVersionU16;
  } else if (magic == kShardMagicU32) {
    token_bytes = 4;
    expected_version = kShardVersionU32;
  } else {
    bad_file(file,
             fmt::format("bad magic number {} in the shard header (expected {} or {})", magic,
                         kShardMagicU16, kShardMagicU32),
             shard_hint);
  }
  if (version != expected_version) {
    bad_file(file,
             fmt::format("unsupported shard version {} for magic {} (expected version {})", version,
                         magic, expected_version),
             shard_hint);
  }
  const int64_t count = header[2];
  if (count < 0) bad_file(file, fmt::format("negative token count {} in the header", count));
  const int64_t expected_size = kShardHeaderBytes + count * token_bytes;
  if (size < expected_size) {
    bad_file(file,
             fmt::format("truncated: the header promises {} tokens ({} bytes in all) but the "
                         "file has {} bytes",
                         count, expected_size, size),
             "the shard was cut short (an interrupted copy or download?); re-create it");
  }
  if (size > expected_size) {
    bad_file(file,
             fmt::format("oversized: the header promises {} tokens ({} bytes in all) but the "
                         "file has {} bytes ({} extra)",
                         count, expected_size, size, size - expected_size),
             "the header's token count does not match the data; re-create the shard");
  }
  if (token_bytes == 2) {
    std::vector<uint16_t> raw(static_cast<size_t>(count));
    read_exact(in, file, raw.data(), count * 2);
    convert_tokens(file, raw, vocab_size, out);
  } else {
    std::vector<uint32_t> raw(static_cast<size_t>(count));
    read_exact(in, file, raw.data(), count * 4);
    convert_tokens(file, raw, vocab_size, out);
  }
}

std::string describe(const TokenStream& s) {
  if (s.files.size() == 1) return fmt::format("data file '{}'", s.files[0]);
  return fmt::format("data '{}' ({} files)", s.source, s.files.size());
}

// Loads the streams of a run; one object so the steps share their inputs.
struct DataLoader {
  const config::DataConfig& data;
  TokenFormat format;  // as configured; kAuto is decided per path
  int64_t vocab_size;
  int64_t seq_len;
  Datasets& out;
  std::optional<DataTokenizer> tokenizer;  // loaded when first needed

  DataLoader(const config::DataConfig& d, TokenFormat f, int64_t v, int64_t t, Datasets& o)
      : data(d), format(f), vocab_size(v), seq_len(t), out(o) {}

  TokenFormat format_of(const std::string& pattern) const {
    if (format != TokenFormat::kAuto) return format;
    const std::string lower = to_lower(pattern);
    return ends_with(lower, ".bin")     ? TokenFormat::kBin
           : ends_with(lower, ".jsonl") ? TokenFormat::kJsonl
                                        : TokenFormat::kText;
  }
  bool by_documents() const { return format_of(data.train) == TokenFormat::kJsonl; }

  const DataTokenizer& get_tokenizer() {
    if (tokenizer) return *tokenizer;
    tokenizer.emplace(data.tokenizer.empty() ? DataTokenizer::bytes()
                                             : DataTokenizer::load(data.tokenizer));
    // The byte tokenizer's ids are checked one by one, as for plain text.
    if (!tokenizer->is_bytes() && tokenizer->vocab_size() > vocab_size) {
      throw UsageError(
          fmt::format("the tokenizer {} has a vocabulary of {} tokens, more than the model's "
                      "vocab_size {}",
                      data.tokenizer, tokenizer->vocab_size(), vocab_size),
          data.tokenizer_from_model
              ? "the tokenizer.json of model.from_hf does not fit its config.json; set "
                "data.tokenizer to a matching one"
              : "use the model's own tokenizer, or raise model.vocab_size");
    }
    out.tokenizer = tokenizer->describe();
    return *tokenizer;
  }

  TokenStream load(const std::string& pattern) {
    const TokenFormat f = format_of(pattern);
    const bool jsonl = f == TokenFormat::kJsonl;
    if (!jsonl && (f == TokenFormat::kBin || data.tokenizer.empty())) {
      return load_tokens(pattern, f, vocab_size, data.packing ? seq_len + 1 : 1);
    }
    const DataTokenizer& tok = get_tokenizer();
    TokenStream stream;
    stream.source = pattern;
    stream.files = expand(pattern);
    for (const std::string& file : stream.files) {
      int64_t size = 0;
      open_data_file(file, size);  // the same checks and messages as the other formats
      Documents docs = tokenize_file(file, jsonl, data, tok, vocab_size);
      ++(docs.from_cache ? out.files_from_cache : out.files_tokenised);
      const int64_t base = stream.size();
      stream.tokens.insert(stream.tokens.end(), docs.tokens.begin(), docs.tokens.end());
      if (data.mask_prompt) {
        stream.ignored.resize(stream.tokens.size(), 0);
      }
      for (int64_t d = 0; d < docs.count(); ++d) {
        const int64_t begin = base + docs.begin_of(d);
        if (data.mask_prompt) {
          const int64_t prompt = docs.prompt_sizes[static_cast<size_t>(d)];
          std::fill_n(stream.ignored.begin() + begin, prompt, uint8_t{1});
        }
        stream.document_ends.push_back(base + docs.ends[static_cast<size_t>(d)]);
      }
    }
    stream.pad_id = tok.eos();
    if (stream.documents() == 0) {
      throw UsageError(fmt::format("{}: holds no documents", describe(stream)),
                       "a JSON-lines file needs one JSON object per line");
    }
    return stream;
  }

  // The unpacked samples (token_dataset.h), and the size checks of both layouts.
  void finish(TokenStream& s, const char* role) {
    const int64_t need = seq_len + 1;
    if (data.packing) {
      if (s.size() < need) {
        throw UsageError(fmt::format("{}: the {} data hold {} tokens, too few for one sample of "
                                     "seq_len + 1 = {} tokens",
                                     describe(s), role, s.size(), need),
                         "use more data or a shorter data.seq_len");
      }
      return;
    }
    int64_t begin = 0;
    for (const int64_t end : s.document_ends) {
      for (int64_t start = begin; start + 1 < end; start += seq_len) {
        const int64_t length = std::min(need, end - start);
        const bool any_target =
            s.ignored.empty() ||
            std::find(s.ignored.begin() + start + 1, s.ignored.begin() + start + length,
                      uint8_t{0}) != s.ignored.begin() + start + length;
        if (any_target) s.samples.push_back({start, length});
      }
      begin = end;
    }
    if (s.samples.empty()) {
      throw UsageError(
          fmt::format("{}: the {} data give no sample with a target ({} documents, {} tokens)",
                      describe(s), role, s.documents(), s.size()),
          "every document is too short or entirely prompt");
    }
  }

  // Moves train's tokens (and their loss flags) from position `cut` on into val.
  void move_tail_to_val(int64_t cut) {
    TokenStream& train = out.train;
    TokenStream& val = out.val;
    val.source = train.source;
    val.files = train.files;
    val.pad_id = train.pad_id;
    val.tokens.assign(train.tokens.begin() + cut, train.tokens.end());
    train.tokens.resize(static_cast<size_t>(cut));
    if (!train.ignored.empty()) {
      val.ignored.assign(train.ignored.begin() + cut, train.ignored.end());
      train.ignored.resize(static_cast<size_t>(cut));
    }
  }

  // Moves the last n_val documents of train into val.
  void split_documents(int64_t n_val) {
    TokenStream& train = out.train;
    const int64_t keep = train.documents() - n_val;
    const int64_t cut = train.document_ends[static_cast<size_t>(keep - 1)];
    TokenStream& val = out.val;
    move_tail_to_val(cut);
    for (size_t d = static_cast<size_t>(keep); d < train.document_ends.size(); ++d) {
      val.document_ends.push_back(train.document_ends[d] - cut);
    }
    train.document_ends.resize(static_cast<size_t>(keep));
  }

  // Moves the last n_val tokens of train into val, cutting the document they fall in.
  void split_tokens(int64_t n_val) {
    TokenStream& train = out.train;
    TokenStream& val = out.val;
    const int64_t cut = train.size() - n_val;
    move_tail_to_val(cut);
    std::vector<int64_t> kept;
    for (const int64_t end : train.document_ends) {
      if (end <= cut) {
        kept.push_back(end);
      } else {
        val.document_ends.push_back(end - cut);
      }
    }
    if (kept.empty() || kept.back() != cut) kept.push_back(cut);
    train.document_ends = std::move(kept);
  }

  Datasets run() {
    const int64_t need = seq_len + 1;
    if (!data.val.empty()) {
      out.train = load(data.train);
      out.val = load(data.val);
      finish(out.train, "train");
      finish(out.val, "validation");
      return std::move(out);
    }
    out.train = load(data.train);
    out.val_split_from_train = true;
    const std::string what = describe(out.train);
    if (data.val_fraction == 0) {
      finish(out.train, "train");
      return std::move(out);
    }
    if (by_documents()) {
      const int64_t docs = out.train.documents();
      const auto n_val =
          static_cast<int64_t>(std::floor(static_cast<double>(docs) * data.val_fraction));
      if (n_val < 1 || n_val >= docs) {
        throw UsageError(
            fmt::format("{}: its last val_fraction {} of {} documents is {} documents, and "
                        "validation and training each need at least one",
                        what, data.val_fraction, docs, n_val),
            "raise data.val_fraction, give a separate data.val, or set data.val_fraction: 0");
      }
      split_documents(n_val);
      finish(out.train, "train");
      finish(out.val, "validation");
      return std::move(out);
    }
    const int64_t total = out.train.size();
    const auto n_val =
        static_cast<int64_t>(std::floor(static_cast<double>(total) * data.val_fraction));
    if (n_val == 0 && data.val_fraction == 0) return std::move(out);
    if (data.packing && n_val < need) {
      throw UsageError(
          fmt::format("{}: its last val_fraction {} is {} of {} tokens, too few for one "
                      "validation sample of seq_len + 1 = {} tokens",
                      what, data.val_fraction, n_val, total, need),
          "raise data.val_fraction, give a separate data.val, or set data.val_fraction: 0");
    }
    if (data.packing && total - n_val < need) {
      throw UsageError(
          fmt::format("{}: after setting aside the last {} tokens for validation only {} "
                      "remain, too few for one sample of seq_len + 1 = {} tokens",
                      what, n_val, total - n_val, need),
          "lower data.val_fraction or give a separate data.val");
    }
    split_tokens(n_val);
    finish(out.train, "train");
    finish(out.val, "validation");
    return std::move(out);
  }
};

}  // namespace

TokenFormat parse_token_format(std::string_view name) {
  if (name == "auto") return TokenFormat::kAuto;
  if (name == "text") return TokenFormat::kText;
  if (name == "bin") return TokenFormat::kBin;
  if (name == "jsonl") return TokenFormat::kJsonl;
  throw UsageError(fmt::format("unknown data format \"{}\"", name),
                   "data.format is one of auto, text, bin or jsonl");
}

TokenStream load_tokens(const std::string& path_or_glob, TokenFormat format, int64_t vocab_size,
                        int64_t min_tokens) {
  DS_CHECK(vocab_size > 0, "vocab_size must be positive, got {}", vocab_size);
  TokenStream stream;
  stream.source = path_or_glob;
  stream.files = expand(path_or_glob);
  if (format == TokenFormat::kAuto) {
    format = ends_with(to_lower(path_or_glob), ".bin") ? TokenFormat::kBin : TokenFormat::kText;
  }
  DS_CHECK(format != TokenFormat::kJsonl, "JSON lines are read by load_datasets");
  for (const std::string& file : stream.files) {
    if (format == TokenFormat::kBin) {
      append_shard(file, vocab_size, stream.tokens);
    } else {
      append_text(file, vocab_size, stream.tokens);
    }
    stream.document_ends.push_back(stream.size());
  }
  if (stream.size() < min_tokens) {
    throw UsageError(fmt::format("{}: holds {} tokens, too few for one sample of seq_len + 1 = "
                                 "{} tokens",
                                 describe(stream), stream.size(), min_tokens),
                     "use more data or a shorter data.seq_len");
  }
  return stream;
}

Datasets load_datasets(const config::DataConfig& data, int64_t vocab_size, int64_t seq_len) {
  DS_CHECK(seq_len > 0, "seq_len must be positive, got {}", seq_len);
  DS_CHECK(vocab_size > 0, "vocab_size must be positive, got {}", vocab_size);
  const TokenFormat format = parse_token_format(data.format);
  if (!(data.val_fraction >= 0 && data.val_fraction < 1)) {
    throw UsageError(fmt::format("data.val_fraction {} is outside [0, 1)", data.val_fraction));
  }
  Datasets out;
  DataLoader loader(data, format, vocab_size, seq_len, out);
  return loader.run();
}

}  // namespace ds::data
