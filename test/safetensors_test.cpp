#include "checkpoint/safetensors.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "util/error.h"

namespace fs = std::filesystem;
using ds::checkpoint::Metadata;
using ds::checkpoint::SafetensorsFile;
using ds::checkpoint::StDType;
using ds::checkpoint::StTensorRef;

namespace {

const fs::path kGolden = fs::path(DS_SOURCE_DIR) / "test" / "golden";

// A folder of its own under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("ds_safetensors_test." + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string le64(uint64_t n) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out;
}

// A file from a header given as JSON text and `data_size` data bytes.
std::string make_file(const std::string& header, size_t data_size) {
  return le64(header.size()) + header + std::string(data_size, '\x01');
}

template <typename T>
std::vector<T> values_of(const ds::checkpoint::StTensor& t) {
  std::vector<T> out(t.data.size() / sizeof(T));
  std::memcpy(out.data(), t.data.data(), t.data.size());
  return out;
}

// Parsing `bytes` must fail with a UsageError that names the source and the problem.
void expect_corrupt(const std::string& bytes, const std::string& problem) {
  INFO("expected problem: " << problem);
  try {
    SafetensorsFile::parse(bytes, "broken.safetensors");
    FAIL("parse accepted a corrupt file");
  } catch (const ds::UsageError& e) {
    const std::string what = e.what();
    INFO("message: " << what);
    CHECK(what.find("broken.safetensors") != std::string::npos);
    CHECK(what.find(problem) != std::string::npos);
    CHECK(e.code() == ds::ExitCode::kUsage);
  }
}

}  // namespace

TEST_CASE("safetensors: dtype names follow the format", "[safetensors]") {
  using ds::checkpoint::parse_st_dtype;
  using ds::checkpoint::st_dtype_name;
  using ds::checkpoint::st_dtype_size;
  for (auto name : {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "U16", "I16", "F16", "BF16", "U32",
                    "I32", "F32", "U64", "I64", "F64"}) {
    const auto dtype = parse_st_dtype(name);
    REQUIRE(dtype);
    CHECK(st_dtype_name(*dtype) == name);
  }
  CHECK(st_dtype_size(StDType::kBF16) == 2);
  CHECK(st_dtype_size(StDType::kI64) == 8);
  CHECK_FALSE(parse_st_dtype("f32"));
  CHECK_FALSE(parse_st_dtype("F4"));
}

TEST_CASE("safetensors: tensors and metadata survive a round trip", "[safetensors]") {
  const std::vector<float> f32{1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  const std::vector<uint16_t> f16{0x3c00, 0xc000, 0x7bff};  // 1, -2, 65504
  const std::vector<uint16_t> bf16{0x3f80, 0xc000};         // 1, -2
  const std::vector<int32_t> i32{-1, 2, -3};
  const std::vector<int64_t> i64{int64_t{1} << 40, -5};
  const std::vector<uint16_t> u16{0, 1, 65535};
  const float scalar = 7.25f;
  const std::vector<StTensorRef> tensors{
      {"half", StDType::kF16, {3}, f16.data()}, {"weights", StDType::kF32, {2, 3}, f32.data()},
      {"ids", StDType::kI32, {3}, i32.data()},  {"brain", StDType::kBF16, {2, 1}, bf16.data()},
      {"big", StDType::kI64, {2}, i64.data()},  {"u", StDType::kU16, {3}, u16.data()},
      {"scalar", StDType::kF32, {}, &scalar},   {"empty", StDType::kF32, {0, 4}, nullptr},
  };
  const Metadata metadata{{"step", "12"}, {"format", "pt"}};

  TempDir dir;
  const fs::path path = dir.path / "x.safetensors";
  ds::checkpoint::write_safetensors(path, tensors, metadata);
  // Only the file itself: the temporary it was written through is gone.
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);

  const auto file = SafetensorsFile::load(path);
  CHECK(file.source() == path.string());
  CHECK(file.metadata() == metadata);
  REQUIRE(file.tensors().size() == tensors.size());
  CHECK(file.f32("weights") == f32);
  CHECK(file.i32("ids") == i32);
  CHECK(file.i64("big") == i64);
  CHECK(values_of<uint16_t>(file.at("half")) == f16);
  CHECK(values_of<uint16_t>(file.at("brain")) == bf16);
  CHECK(values_of<uint16_t>(file.at("u")) == u16);
  CHECK(file.at("weights").shape == std::vector<int64_t>{2, 3});
  CHECK(file.at("brain").dtype == StDType::kBF16);
  CHECK(file.at("scalar").shape.empty());
  CHECK(file.at("scalar").numel() == 1);
  CHECK(file.f32("scalar") == std::vector<float>{7.25f});
  CHECK(file.at("empty").numel() == 0);
  CHECK(file.at("empty").data.empty());
  CHECK_FALSE(file.contains("missing"));
  CHECK_THROWS_AS(file.at("missing"), ds::UsageError);
  CHECK_THROWS_AS(file.f32("ids"), ds::UsageError);  // no silent conversion

  // Larger elements first, the caller's order kept within a size: every tensor is
  // naturally aligned in the mapped file.
  std::vector<std::string> order;
  for (const auto& t : file.tensors()) {
    order.push_back(t.name);
    const auto address = reinterpret_cast<uintptr_t>(t.data.data());
    CHECK(address % ds::checkpoint::st_dtype_size(t.dtype) == 0);
  }
  CHECK(order ==
        std::vector<std::string>{"big", "weights", "ids", "scalar", "empty", "half", "brain", "u"});

  // Writing again replaces the file atomically.
  ds::checkpoint::write_safetensors(path, std::vector<StTensorRef>{tensors[1]});
  CHECK(SafetensorsFile::load(path).tensors().size() == 1);
}

TEST_CASE("safetensors: the header is compact JSON padded with spaces to 8 bytes",
          "[safetensors]") {
  const float value = 1.0f;
  const std::vector<StTensorRef> one{{"a", StDType::kF32, {1}, &value}};
  const std::string bytes = ds::checkpoint::serialize_safetensors(one);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  const std::string header = bytes.substr(8, n);
  const std::string json = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  CHECK(header.substr(0, json.size()) == json);
  CHECK(header.find_first_not_of(' ', json.size()) == std::string::npos);
  CHECK(bytes.size() == 8 + n + 4);
}

TEST_CASE("safetensors: the writer rejects ambiguous input", "[safetensors]") {
  const float value = 1.0f;
  const std::vector<StTensorRef> twice{{"a", StDType::kF32, {1}, &value},
                                       {"a", StDType::kF32, {1}, &value}};
  CHECK_THROWS_AS(ds::checkpoint::serialize_safetensors(twice), ds::Error);
  const std::vector<StTensorRef> reserved{{"__metadata__", StDType::kF32, {1}, &value}};
  CHECK_THROWS_AS(ds::checkpoint::serialize_safetensors(reserved), ds::Error);
  const std::vector<StTensorRef> negative{{"a", StDType::kF32, {-1}, &value}};
  CHECK_THROWS_AS(ds::checkpoint::serialize_safetensors(negative), ds::Error);
  CHECK_THROWS_AS(ds::checkpoint::write_safetensors("/nonexistent-dir/x.safetensors", {}),
                  ds::Error);
}

TEST_CASE("safetensors: corrupt files are refused with a message naming file and problem",
          "[safetensors]") {
  const std::string tensor = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

  SECTION("a well-formed file parses") {
    CHECK(SafetensorsFile::parse(make_file("{" + tensor + "}", 8)).tensors().size() == 1);
  }
  SECTION("shorter than 8 bytes") {
    expect_corrupt("", "shorter than the 8-byte header length");
    expect_corrupt("\x08\x00\x00", "shorter than the 8-byte header length");
  }
  SECTION("header length beyond the file") {
    expect_corrupt(le64(100) + "{}", "beyond the end of the file");
    expect_corrupt(le64(uint64_t{1} << 62), "larger than the");
  }
  SECTION("invalid JSON") {
    expect_corrupt(make_file("{\"t\":{\"dtype\":", 0), "not valid JSON");
    expect_corrupt(make_file("[1, 2]  ", 0), "does not start with a JSON object");
    expect_corrupt(make_file("{\"t\":\"\xff\xfe\"}", 0), "not valid JSON");  // bad UTF-8
  }
  SECTION("offsets beyond the data") {
    expect_corrupt(make_file("{" + tensor + "}", 4), "go beyond the 4-byte data section");
  }
  SECTION("overlapping tensors") {
    const std::string u = R"("u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})";
    expect_corrupt(make_file("{" + tensor + "," + u + "}", 8), "overlaps");
  }
  SECTION("a hole between tensors, or bytes after the last one") {
    const std::string u = R"("u":{"dtype":"F32","shape":[1],"data_offsets":[12,16]})";
    expect_corrupt(make_file("{" + tensor + "," + u + "}", 16), "belong to no tensor");
    expect_corrupt(make_file("{" + tensor + "}", 12),
                   "cover 8 bytes but the data section holds 12");
  }
  SECTION("shape × dtype size differs from the offsets' span") {
    expect_corrupt(make_file(R"({"t":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8),
                   "needs 4 bytes but data_offsets [0, 8] span 8");
    expect_corrupt(
        make_file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                  8),
        "needs too many bytes");
  }
  SECTION("unknown dtype") {
    expect_corrupt(make_file(R"({"t":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}})", 8),
                   "unknown dtype \"F128\"");
  }
  SECTION("malformed entries") {
    expect_corrupt(make_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
                   "not a non-negative integer");
    expect_corrupt(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8),
                   "end before they begin");
    expect_corrupt(make_file(R"({"t":{"dtype":"F32","shape":[2]}})", 8), "data_offsets");
    expect_corrupt(make_file(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", 8), "dtype");
    expect_corrupt(make_file(R"({"t":[1]})", 8), "not a JSON object");
    expect_corrupt(make_file(R"({"__metadata__":{"a":1},)" + tensor + "}", 8),
                   "value of 'a' is not a string");
    expect_corrupt(make_file("{" + tensor + "," + tensor + "}", 8), "names 't' twice");
  }
  SECTION("a missing file or an empty one") {
    TempDir dir;
    CHECK_THROWS_AS(SafetensorsFile::load(dir.path / "nope.safetensors"), ds::UsageError);
    std::ofstream(dir.path / "empty.safetensors").close();
    CHECK_THROWS_WITH(SafetensorsFile::load(dir.path / "empty.safetensors"),
                      Catch::Contains("empty.safetensors") && Catch::Contains("only 0 bytes"));
  }
}

// Written by the reference Python library (scripts/make_golden.py --reference-fixture).
TEST_CASE("safetensors: a file written by the reference library loads", "[safetensors]") {
  const auto file = SafetensorsFile::load(kGolden / "reference_written.safetensors");
  CHECK(file.metadata() == Metadata{{"format", "pt"}, {"writer", "safetensors (python)"}});
  CHECK(file.tensors().size() == 8);
  CHECK(file.f32("f32") == std::vector<float>{-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f});
  CHECK(file.at("f32").shape == std::vector<int64_t>{2, 3});
  CHECK(values_of<uint16_t>(file.at("f16")) == std::vector<uint16_t>{0x3c00, 0xc100, 0x7bff});
  CHECK(values_of<uint16_t>(file.at("bf16")) ==
        std::vector<uint16_t>{0x3f80, 0xc000, 0x3e20, 0x4040});
  CHECK(file.i32("i32") == std::vector<int32_t>{-1, 2, 3, INT32_MIN});
  CHECK(file.i64("i64") == std::vector<int64_t>{int64_t{1} << 40, -5});
  CHECK(values_of<uint16_t>(file.at("u16")) == std::vector<uint16_t>{0, 1, 65535});
  CHECK(file.f32("scalar") == std::vector<float>{7.25f});
  CHECK(file.at("empty").shape == std::vector<int64_t>{0, 4});

  // Handing the same tensors over in the reference's order reproduces its bytes.
  std::vector<StTensorRef> same;
  for (const auto& t : file.tensors()) same.push_back({t.name, t.dtype, t.shape, t.data.data()});
  const std::string ours = ds::checkpoint::serialize_safetensors(same, file.metadata());
  std::ifstream in(kGolden / "reference_written.safetensors", std::ios::binary);
  const std::string theirs((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(ours == theirs);
}

TEST_CASE("safetensors: the GPT-2 golden fixture loads and is plausible", "[safetensors][golden]") {
  const auto file = SafetensorsFile::load(kGolden / "gpt_small.safetensors");
  const auto& meta = file.metadata();
  const int64_t n_layer = std::stoll(meta.at("n_layer"));
  const int64_t c = std::stoll(meta.at("n_embd"));
  const int64_t v = std::stoll(meta.at("vocab_size"));
  const int64_t block = std::stoll(meta.at("block_size"));
  const int64_t b = std::stoll(meta.at("batch_size"));
  const int64_t t = std::stoll(meta.at("seq_len"));
  CHECK(n_layer == 2);
  CHECK(meta.at("n_head") == "4");
  CHECK(meta.at("lr") == "0.001");
  CHECK(meta.at("weight_decay") == "0.1");

  using Shape = std::vector<int64_t>;
  std::vector<std::pair<std::string, Shape>> params{{"transformer.wte.weight", {v, c}},
                                                    {"transformer.wpe.weight", {block, c}}};
  for (int64_t i = 0; i < n_layer; ++i) {
    const std::string h = "transformer.h." + std::to_string(i) + ".";
    params.insert(params.end(), {{h + "ln_1.weight", {c}},
                                 {h + "ln_1.bias", {c}},
                                 {h + "attn.c_attn.weight", {c, 3 * c}},
                                 {h + "attn.c_attn.bias", {3 * c}},
                                 {h + "attn.c_proj.weight", {c, c}},
                                 {h + "attn.c_proj.bias", {c}},
                                 {h + "ln_2.weight", {c}},
                                 {h + "ln_2.bias", {c}},
                                 {h + "mlp.c_fc.weight", {c, 4 * c}},
                                 {h + "mlp.c_fc.bias", {4 * c}},
                                 {h + "mlp.c_proj.weight", {4 * c, c}},
                                 {h + "mlp.c_proj.bias", {c}}});
  }
  params.insert(params.end(), {{"transformer.ln_f.weight", {c}}, {"transformer.ln_f.bias", {c}}});
  for (const auto& [name, shape] : params) {
    INFO(name);
    for (const auto* prefix : {"param.", "grad."}) {
      const auto& tensor = file.at(prefix + name);
      CHECK(tensor.dtype == StDType::kF32);
      CHECK(tensor.shape == shape);
    }
  }
  // Parameters, gradients and masked gradients; inputs, targets, logits, loss,
  // masked_targets, masked_loss, adamw_losses: nothing else.
  CHECK(file.tensors().size() == 3 * params.size() + 7);
  CHECK(file.f32("param.transformer.h.0.ln_1.weight") == std::vector<float>(c, 1.0f));

  const auto inputs = file.i32("inputs");
  const auto targets = file.i32("targets");
  CHECK(file.at("inputs").shape == Shape{b, t});
  CHECK(file.at("targets").shape == Shape{b, t});
  for (int64_t row = 0; row < b; ++row) {
    for (int64_t col = 0; col + 1 < t; ++col) {
      CHECK(targets[row * t + col] == inputs[row * t + col + 1]);  // next-token targets
    }
  }
  for (int32_t id : inputs) CHECK((id >= 0 && id < v));
  CHECK(file.at("logits").shape == Shape{b, t, v});

  const auto loss = file.f32("loss");
  REQUIRE(loss.size() == 1);
  CHECK(std::isfinite(loss[0]));
  CHECK(loss[0] == Approx(std::log(static_cast<double>(v))).epsilon(0.05));  // near uniform
  const auto losses = file.f32("adamw_losses");
  REQUIRE(losses.size() == 10);
  CHECK(losses[0] == loss[0]);
  for (size_t i = 1; i < losses.size(); ++i) CHECK(losses[i] < losses[i - 1]);
}
