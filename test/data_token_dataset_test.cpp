// Token loading: text and llm.c shards, the train/val split, and every kind of bad input
// (each must be a UsageError naming the file and the problem).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/token_dataset.h"
#include "process_helpers.h"
#include "util/error.h"

namespace fs = std::filesystem;
using ds::data::load_tokens;
using ds::data::TokenFormat;
using ds::testing::TempDir;

namespace {

// A fresh directory under the system temp dir, removed at the end of the test.

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// An llm.c shard; count_override and extra_bytes make broken ones.
template <typename T>
void write_shard(const std::string& path, const std::vector<T>& tokens, int32_t magic,
                 int32_t version, int64_t count_override = -1, int extra_bytes = 0) {
  std::vector<int32_t> header(256, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = static_cast<int32_t>(count_override >= 0 ? count_override
                                                       : static_cast<int64_t>(tokens.size()));
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header.data()), 1024);
  out.write(reinterpret_cast<const char*>(tokens.data()),
            static_cast<std::streamsize>(tokens.size() * sizeof(T)));
  for (int i = 0; i < extra_bytes; ++i) out.put('\0');
}

void write_u16(const std::string& path, const std::vector<uint16_t>& tokens) {
  write_shard(path, tokens, 20240520, 1);
}

// Runs `load` and checks it throws a UsageError (exit code 2) mentioning every needle.
template <typename F>
void expect_usage_error(F&& load, const std::vector<std::string>& needles) {
  try {
    load();
    FAIL("expected a UsageError");
  } catch (const ds::UsageError& e) {
    INFO(e.what());
    CHECK(e.code() == ds::ExitCode::kUsage);
    for (const auto& needle : needles) CHECK_THAT(e.what(), Catch::Contains(needle));
  }
}

}  // namespace

TEST_CASE("text files are bytes as tokens", "[data]") {
  TempDir dir;
  write_bytes(dir.file("a.txt"), std::string("hi\xff", 3));
  auto s = load_tokens(dir.file("a.txt"), TokenFormat::kAuto, 256, 2);
  CHECK(s.tokens == std::vector<int32_t>{'h', 'i', 255});
  CHECK(s.files == std::vector<std::string>{dir.file("a.txt")});
}

TEST_CASE("uint16 and uint32 shards, globbed in sorted order", "[data]") {
  TempDir dir;
  write_u16(dir.file("train_001.bin"), {7, 8, 9});
  write_u16(dir.file("train_000.bin"), {1, 2, 60000});
  auto s = load_tokens(dir.file("train_*.bin"), TokenFormat::kAuto, 65536, 2);
  CHECK(s.tokens == std::vector<int32_t>{1, 2, 60000, 7, 8, 9});
  CHECK(s.files.size() == 2);
  CHECK(s.files[0] == dir.file("train_000.bin"));

  write_shard<uint32_t>(dir.file("big.bin"), {100000, 5}, 20240801, 7);
  auto big = load_tokens(dir.file("big.bin"), TokenFormat::kAuto, 200000, 2);
  CHECK(big.tokens == std::vector<int32_t>{100000, 5});
}

TEST_CASE("format forces the reader", "[data]") {
  TempDir dir;
  write_bytes(dir.file("notes.bin"), "abc");
  CHECK(load_tokens(dir.file("notes.bin"), TokenFormat::kText, 256, 2).tokens ==
        std::vector<int32_t>{'a', 'b', 'c'});
  write_u16(dir.file("shard.dat"), {3, 4});
  CHECK(load_tokens(dir.file("shard.dat"), TokenFormat::kBin, 256, 2).tokens ==
        std::vector<int32_t>{3, 4});
  CHECK(ds::data::parse_token_format("bin") == TokenFormat::kBin);
  expect_usage_error([] { ds::data::parse_token_format("json"); }, {"json", "format"});
}

TEST_CASE("bad data inputs name the file and the problem", "[data]") {
  TempDir dir;
  SECTION("missing file") {
    const auto f = dir.file("nope.txt");
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 256, 2); }, {f, "no such file"});
  }
  SECTION("a directory") {
    expect_usage_error([&] { load_tokens(dir.file(""), TokenFormat::kText, 256, 2); },
                       {"is a directory"});
  }
  SECTION("empty text file") {
    const auto f = dir.file("empty.txt");
    write_bytes(f, "");
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 256, 2); }, {f, "is empty"});
  }
  SECTION("empty shard") {
    const auto f = dir.file("empty.bin");
    write_bytes(f, "");
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 256, 2); }, {f, "is empty"});
  }
  SECTION("glob matching nothing") {
    const auto pattern = dir.file("shard_*.bin");
    expect_usage_error([&] { load_tokens(pattern, TokenFormat::kAuto, 256, 2); },
                       {pattern, "matches no file"});
  }
  SECTION("shard shorter than its header") {
    const auto f = dir.file("short.bin");
    write_bytes(f, std::string(100, 'x'));
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 256, 2); },
                       {f, "100 bytes", "too short", "1024-byte"});
  }
  SECTION("truncated shard") {
    const auto f = dir.file("cut.bin");
    write_shard<uint16_t>(f, {1, 2, 3}, 20240520, 1, /*count=*/5);
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 256, 2); },
                       {f, "truncated", "5 tokens", "1034 bytes", "1030 bytes"});
  }
  SECTION("oversized shard") {
    const auto f = dir.file("fat.bin");
    write_shard<uint16_t>(f, {1, 2, 3}, 20240520, 1, -1, /*extra_bytes=*/3);
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 256, 2); },
                       {f, "oversized", "3 extra"});
  }
  SECTION("wrong magic") {
    const auto f = dir.file("magic.bin");
    write_shard<uint16_t>(f, {1, 2, 3}, 12345, 1);
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 256, 2); },
                       {f, "bad magic number 12345"});
  }
  SECTION("wrong version") {
    const auto f = dir.file("version.bin");
    write_shard<uint16_t>(f, {1, 2, 3}, 20240520, 3);
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 256, 2); },
                       {f, "unsupported shard version 3", "expected version 1"});
    write_shard<uint32_t>(f, {1, 2, 3}, 20240801, 1);
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 256, 2); },
                       {f, "unsupported shard version 1", "expected version 7"});
  }
  SECTION("token id beyond the vocabulary in a shard") {
    const auto f = dir.file("vocab.bin");
    write_u16(f, {1, 2, 50257, 3});
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 50257, 2); },
                       {f, "token 50257", "position 2", "vocab_size 50257"});
  }
  SECTION("byte beyond a small vocabulary in text") {
    const auto f = dir.file("small.txt");
    write_bytes(f, "abz");
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 100, 2); },
                       {f, "token 122", "vocab_size 100"});
  }
  SECTION("too few tokens for one sample") {
    const auto f = dir.file("tiny.txt");
    write_bytes(f, "abcd");
    expect_usage_error([&] { load_tokens(f, TokenFormat::kAuto, 256, 9); },
                       {f, "4 tokens", "seq_len + 1 = 9"});
  }
  SECTION("one bad shard among good ones") {
    write_u16(dir.file("s_0.bin"), {1, 2, 3});
    write_shard<uint16_t>(dir.file("s_1.bin"), {1, 2, 3}, 20240520, 2);
    expect_usage_error([&] { load_tokens(dir.file("s_*.bin"), TokenFormat::kAuto, 256, 2); },
                       {dir.file("s_1.bin"), "version 2"});
  }
}

TEST_CASE("the validation split is the tail of the train stream", "[data]") {
  TempDir dir;
  std::vector<uint16_t> tokens(100);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i);
  write_u16(dir.file("all.bin"), tokens);
  ds::config::DataConfig cfg;
  cfg.train = dir.file("all.bin");
  cfg.val_fraction = 0.25;  // floor(100 * 0.25) = 25 tokens
  auto d = ds::data::load_datasets(cfg, 256, 8);
  CHECK(d.val_split_from_train);
  REQUIRE(d.train.size() == 75);
  REQUIRE(d.val.size() == 25);
  CHECK(d.train.tokens.front() == 0);
  CHECK(d.train.tokens.back() == 74);
  CHECK(d.val.tokens.front() == 75);
  CHECK(d.val.tokens.back() == 99);

  cfg.val_fraction = 0;
  auto no_val = ds::data::load_datasets(cfg, 256, 8);
  CHECK(no_val.train.size() == 100);
  CHECK(no_val.val.tokens.empty());

  cfg.val_fraction = 0.05;  // 5 tokens < seq_len + 1
  expect_usage_error([&] { ds::data::load_datasets(cfg, 256, 8); },
                     {dir.file("all.bin"), "val_fraction", "5 of 100 tokens"});

  cfg.val_fraction = 0.95;  // 95 for val leaves 5 for training
  expect_usage_error([&] { ds::data::load_datasets(cfg, 256, 8); }, {"only 5 remain"});

  write_bytes(dir.file("val.txt"), "0123456789");
  cfg.val = dir.file("val.txt");
  cfg.format = "auto";
  // a separate val file is read in its own format; "auto" decides per path
  cfg.val_fraction = 0.5;
  auto separate = ds::data::load_datasets(cfg, 256, 8);
  CHECK_FALSE(separate.val_split_from_train);
  CHECK(separate.train.size() == 100);
  CHECK(separate.val.tokens ==
        std::vector<int32_t>{'0', '1', '2', '3', '4', '5', '6', '7', '8', '9'});
}
