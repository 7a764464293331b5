// Command-line front end to ds::tokenizer for scripts and benchmarks (not installed):
//
//   tokenizer_tool encode TOKENIZER_JSON TEXT_FILE
//       one JSON line per input line: {"ids": [...], "text": decode(ids)}
//   tokenizer_tool bench TOKENIZER_JSON TEXT_FILE [REPEATS]
//       encode throughput on one thread, MB/s (cold: first pass, warm: later passes)
//   tokenizer_tool train TEXT_FILE MERGES OUT_JSON [gpt2|llama3]
//       a byte-level BPE tokenizer.json learnt from TEXT_FILE, for benchmarks
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer_json.h"
#include "util/error.h"

namespace {

using ds::tokenizer::BpeTokenizer;
using json = nlohmann::json;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ds::UsageError(fmt::format("{}: cannot read", path));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

int encode(const std::string& tok_path, const std::string& text_path) {
  BpeTokenizer tok = BpeTokenizer::load(tok_path);
  std::string text = read_file(text_path);
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    std::vector<int32_t> ids = tok.encode(line);
    json out = {{"ids", ids}, {"text", tok.decode(ids)}};
    std::cout << out.dump() << "\n";
  }
  return 0;
}

int bench(const std::string& tok_path, const std::string& text_path, int repeats) {
  BpeTokenizer tok = BpeTokenizer::load(tok_path);
  std::string text = read_file(text_path);
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (int r = 0; r < repeats; ++r) {
    ids.clear();
    auto t0 = std::chrono::steady_clock::now();
    tok.encode_append(text, ids);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << fmt::format(
        "pass {} ({}): {:.2f} MB in {:.3f} s = {:.1f} MB/s, {} tokens "
        "({:.2f} bytes/token)\n",
        r + 1, r == 0 ? "cold cache" : "warm cache", text.size() / 1e6, s, text.size() / 1e6 / s,
        ids.size(), static_cast<double>(text.size()) / ids.size());
  }
  return 0;
}

// Plain BPE training (most frequent pair, ties by the smaller pair) over the pre-tokens
// of the text: enough to make a realistic vocabulary for benchmarks.
int train(const std::string& text_path, int n_merges, const std::string& out_path,
          const std::string& style) {
  bool llama = style == "llama3";
  std::string text = read_file(text_path);
  std::unordered_map<std::string, int64_t> counts;
  auto sink = [&](std::string_view p) { ++counts[std::string(p)]; };
  ds::tokenizer::split(
      llama ? ds::tokenizer::SplitPattern::kLlama3 : ds::tokenizer::SplitPattern::kGpt2, text,
      sink);
  std::vector<std::string> names;
  std::map<std::string, int> vocab;
  for (int b = 0; b < 256; ++b) {
    names.emplace_back(ds::tokenizer::byte_to_unicode(static_cast<uint8_t>(b)));
    vocab[names.back()] = b;
  }
  std::vector<std::pair<std::vector<int>, int64_t>> words;
  for (const auto& [w, c] : counts) {
    std::vector<int> syms;
    for (char ch : w) syms.push_back(static_cast<unsigned char>(ch));
    words.push_back({syms, c});
  }
  json merges = json::array();
  for (int m = 0; m < n_merges; ++m) {
    std::map<std::pair<int, int>, int64_t> pairs;
    for (const auto& [syms, c] : words) {
      for (size_t i = 0; i + 1 < syms.size(); ++i) pairs[{syms[i], syms[i + 1]}] += c;
    }
    if (pairs.empty()) break;
    auto best = std::max_element(pairs.begin(), pairs.end(),
                                 [](const auto& a, const auto& b) { return a.second < b.second; });
    auto [a, b] = best->first;
    std::string merged = names[a] + names[b];
    if (vocab.count(merged)) continue;
    int id = static_cast<int>(names.size());
    names.push_back(merged);
    vocab[merged] = id;
    merges.push_back(json::array({names[a], names[b]}));
    for (auto& [syms, c] : words) {
      std::vector<int> next;
      for (size_t i = 0; i < syms.size(); ++i) {
        if (i + 1 < syms.size() && syms[i] == a && syms[i + 1] == b) {
          next.push_back(id);
          ++i;
        } else {
          next.push_back(syms[i]);
        }
      }
      syms = std::move(next);
    }
  }
  const json pre = llama ? ds::testing::llama3_pre_tokenizer() : ds::testing::gpt2_pre_tokenizer();
  int special_id = static_cast<int>(names.size());
  json out = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {ds::testing::added_token(llama ? "<|begin_of_text|>" : "<|endoftext|>", special_id, true)}},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre},
      {"post_processor", nullptr},
      {"decoder", ds::testing::byte_level_decoder()},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", llama},
        {"vocab", vocab},
        {"merges", merges}}}};
  std::ofstream(out_path) << out.dump(1) << "\n";
  std::cerr << fmt::format("tokenizer_tool: wrote {} ({} merges)\n", out_path, merges.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() >= 3 && args[0] == "encode") return encode(args[1], args[2]);
    if (args.size() >= 3 && args[0] == "bench") {
      return bench(args[1], args[2], args.size() > 3 ? std::stoi(args[3]) : 3);
    }
    if (args.size() >= 4 && args[0] == "train") {
      return train(args[1], std::stoi(args[2]), args[3], args.size() > 4 ? args[4] : "gpt2");
    }
    std::cerr << "usage: tokenizer_tool encode TOKENIZER_JSON TEXT_FILE\n"
                 "       tokenizer_tool bench TOKENIZER_JSON TEXT_FILE [REPEATS]\n"
                 "       tokenizer_tool train TEXT_FILE MERGES OUT_JSON [gpt2|llama3]\n";
    return 2;
  } catch (const ds::Error& e) {
    return ds::report_error("tokenizer_tool", e);
  }
}
