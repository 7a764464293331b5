// TensorBoard event files, read back by two readers that share no code with the
// writer: a minimal one here (bitwise CRC-32C, a generic protobuf field walker) and
// test/read_tfevents.py, run through /usr/bin/python3.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "process_helpers.h"
#include "worker/monitors/tensorboard_writer.h"

namespace ds::worker {
namespace {

using ds::testing::TempDir;

// ---- an independent reader ----

uint32_t bitwise_crc32c(std::string_view data) {
  uint32_t crc = ~0u;
  for (unsigned char byte : data) {
    crc ^= byte;
    for (int i = 0; i < 8; ++i) crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
  }
  return ~crc;
}
uint32_t mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

template <typename T>
T load(std::string_view bytes, size_t at) {
  REQUIRE(at + sizeof(T) <= bytes.size());
  T value;
  std::memcpy(&value, bytes.data() + at, sizeof(T));
  return value;
}

std::vector<std::string> read_records(const std::string& file) {
  std::vector<std::string> records;
  for (size_t at = 0; at < file.size();) {
    const auto length = load<uint64_t>(file, at);
    CHECK(load<uint32_t>(file, at + 8) ==
          mask(bitwise_crc32c(std::string_view(file).substr(at, 8))));
    REQUIRE(at + 16 + length <= file.size());
    std::string payload = file.substr(at + 12, length);
    CHECK(load<uint32_t>(file, at + 12 + length) == mask(bitwise_crc32c(payload)));
    records.push_back(std::move(payload));
    at += 16 + length;
  }
  return records;
}

struct Field {
  int number, wire;
  uint64_t varint = 0;
  std::string bytes;  // fixed32/fixed64/length-delimited contents
};

std::vector<Field> parse_message(std::string_view m) {
  std::vector<Field> fields;
  size_t at = 0;
  const auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      REQUIRE(at < m.size());
      const auto b = static_cast<unsigned char>(m[at++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (at < m.size()) {
    const uint64_t key = varint();
    Field f{static_cast<int>(key >> 3), static_cast<int>(key & 7), 0, {}};
    size_t n = 0;
    if (f.wire == 0) {
      f.varint = varint();
    } else {
      n = f.wire == 1 ? 8 : f.wire == 5 ? 4 : f.wire == 2 ? static_cast<size_t>(varint()) : 0;
      REQUIRE((f.wire == 1 || f.wire == 2 || f.wire == 5));
      REQUIRE(at + n <= m.size());
      f.bytes = std::string(m.substr(at, n));
      at += n;
    }
    fields.push_back(std::move(f));
  }
  return fields;
}

struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> scalars;
};

Event parse_event(const std::string& payload) {
  Event e;
  for (const Field& f : parse_message(payload)) {
    if (f.number == 1 && f.wire == 1) e.wall_time = load<double>(f.bytes, 0);
    if (f.number == 2 && f.wire == 0) e.step = static_cast<int64_t>(f.varint);
    if (f.number == 3 && f.wire == 2) e.file_version = f.bytes;
    if (f.number == 5 && f.wire == 2) {
      for (const Field& v : parse_message(f.bytes)) {
        REQUIRE(v.number == 1);
        std::pair<std::string, float> scalar;
        for (const Field& x : parse_message(v.bytes)) {
          if (x.number == 1 && x.wire == 2) scalar.first = x.bytes;
          if (x.number == 2 && x.wire == 5) scalar.second = load<float>(x.bytes, 0);
        }
        e.scalars.push_back(scalar);
      }
    }
  }
  return e;
}

// ---- tests ----

TEST_CASE("crc32c matches the standard check values", "[tensorboard]") {
  CHECK(tfevents::crc32c("123456789", 9) == 0xe3069283u);
  const std::string zeros(32, '\0');
  CHECK(tfevents::crc32c(zeros.data(), zeros.size()) == 0x8a9136aau);
  const std::string ones(32, '\xff');
  CHECK(tfevents::crc32c(ones.data(), ones.size()) == 0x62a8ab43u);
  CHECK(tfevents::crc32c("", 0) == 0u);
  const std::string text = "the quick brown fox jumps over the lazy dog, twice over";
  CHECK(tfevents::crc32c(text.data(), text.size()) == bitwise_crc32c(text));
  CHECK(tfevents::masked_crc32c(text.data(), text.size()) == mask(bitwise_crc32c(text)));
}

TEST_CASE("an Event is encoded with the protobuf wire format", "[tensorboard]") {
  // Hand-assembled: wall_time 1.0 (field 1, fixed64), step 300 (field 2, varint AC 02),
  // summary { value { tag "a" simple_value 2.0f } }.
  const std::string expected = std::string("\x09\x00\x00\x00\x00\x00\x00\xf0\x3f", 9) +
                               std::string("\x10\xac\x02", 3) +
                               std::string(
                                   "\x2a\x0a\x0a\x08\x0a\x01"
                                   "a\x15\x00\x00\x00\x40",
                                   12);
  CHECK(tfevents::scalar_event(1.0, 300, "a", 2.0f) == expected);
  const std::string version = tfevents::file_version_event(1.0);
  CHECK(version ==
        std::string("\x09\x00\x00\x00\x00\x00\x00\xf0\x3f", 9) + "\x1a\x0d" + "brain.Event:2");
}

TEST_CASE("the event file reads back: version first, then every scalar", "[tensorboard]") {
  TempDir dir("tensorboard_test");
  config::MonitorConfig cfg;
  cfg.enabled = true;
  cfg.output_path = dir.path().string();
  cfg.job_name = "job";
  std::filesystem::path path;
  {
    TensorBoardWriter writer(cfg);
    path = writer.path();
    CHECK(path.parent_path() == dir.path() / "job");
    CHECK(path.filename().string().rfind("events.out.tfevents.", 0) == 0);
    writer.add_scalar("Train/Samples/train_loss", 5.5, 16, 1700000000.25);
    writer.add_scalar("Train/Samples/lr", 3e-4, 16, 1700000000.25);
    const MonitorEvent more[] = {{"Train/Samples/train_loss", 4.75, 32},
                                 {"Train/Samples/big_step", -1.5, int64_t{1} << 40}};
    writer.write_events(more);
  }
  const std::vector<std::string> records = read_records(ds::testing::read_file(path));
  REQUIRE(records.size() == 5);
  const Event version = parse_event(records[0]);
  CHECK(version.file_version == "brain.Event:2");
  CHECK(version.wall_time > 1.6e9);
  CHECK(version.scalars.empty());

  const Event e1 = parse_event(records[1]);
  CHECK(e1.wall_time == 1700000000.25);
  CHECK(e1.step == 16);
  REQUIRE(e1.scalars.size() == 1);
  CHECK(e1.scalars[0].first == "Train/Samples/train_loss");
  CHECK(e1.scalars[0].second == 5.5f);
  CHECK(parse_event(records[2]).scalars[0].second == static_cast<float>(3e-4));
  CHECK(parse_event(records[3]).step == 32);
  const Event big = parse_event(records[4]);
  CHECK(big.step == int64_t{1} << 40);
  CHECK(big.scalars[0] == std::pair<std::string, float>("Train/Samples/big_step", -1.5f));

  SECTION("read_tfevents.py (an independent Python reader) agrees") {
    if (std::system("/usr/bin/python3 -c pass > /dev/null 2>&1") != 0) {
      WARN("no /usr/bin/python3: skipping test/read_tfevents.py");
      return;
    }
    const auto r = ds::testing::run("/usr/bin/python3 " + ds::testing::kSource +
                                    "/test/read_tfevents.py " + path.string());
    CHECK(r.code == 0);
    CHECK_THAT(r.out, Catch::Matchers::StartsWith("version "));
    CHECK_THAT(r.out, Catch::Matchers::Contains(" brain.Event:2\n"));
    CHECK_THAT(r.out,
               Catch::Matchers::Contains("scalar 1700000000.25 16 Train/Samples/train_loss 5.5\n"));
    CHECK_THAT(r.out, Catch::Matchers::Contains(" 16 Train/Samples/lr 0.0003000000142492354\n"));
    CHECK_THAT(r.out, Catch::Matchers::Contains(" 1099511627776 Train/Samples/big_step -1.5\n"));
  }

  SECTION("a corrupted byte is caught by the CRC") {
    std::string bytes = ds::testing::read_file(path);
    bytes[bytes.size() - 6] ^= 0x20;
    const auto bad = dir.write("events.out.tfevents.bad", bytes);
    if (std::system("/usr/bin/python3 -c pass > /dev/null 2>&1") == 0) {
      const auto r = ds::testing::run("/usr/bin/python3 " + ds::testing::kSource +
                                      "/test/read_tfevents.py " + bad);
      CHECK(r.code == 1);
      CHECK_THAT(r.out, Catch::Matchers::Contains("bad data CRC"));
    }
  }
}

}  // namespace
}  // namespace ds::worker
