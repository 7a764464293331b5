// Reading and writing the safetensors format (Hugging Face), the one file format
// dstrain uses for checkpoints and exported weights:
//
//   8 bytes   N, little-endian uint64: the length of the header
//   N bytes   JSON: {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..],
//             "data_offsets": [begin, end]}, ...}, padded with spaces to a multiple of 8
//   rest      raw little-endian tensor data; offsets are relative to its start
//
// The reader checks everything the reference implementation checks (and names the
// file in every message), because checkpoints come from disk, other tools and
// interrupted runs: a bad file must give a clear UsageError, never a crash or a
// silently wrong tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ds::checkpoint {

// The element types of the format, spelled as in the file ("F32", "BF16", ...).
enum class StDType : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kU16,
  kI16,
  kF16,
  kBF16,
  kU32,
  kI32,
  kF32,
  kU64,
  kI64,
  kF64,
};

size_t st_dtype_size(StDType dtype);
std::string_view st_dtype_name(StDType dtype);
// nullopt for a name the format does not define (or that dstrain does not support).
std::optional<StDType> parse_st_dtype(std::string_view name);

using Metadata = std::map<std::string, std::string>;

// One tensor of a loaded file; `data` points into the file's bytes and lives as long
// as the SafetensorsFile (or any copy of it) does.
struct StTensor {
  std::string name;
  StDType dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps the file read-only and validates it; throws UsageError naming `path`.
  static SafetensorsFile load(const std::filesystem::path& path);
  // The same checks on bytes already in memory; `source` names them in errors.
  static SafetensorsFile parse(std::string bytes, std::string source = "<memory>");

  const std::string& source() const { return source_; }
  const Metadata& metadata() const { return metadata_; }
  // In file order (by data offset).
  const std::vector<StTensor>& tensors() const { return tensors_; }
  bool contains(std::string_view name) const;
  const StTensor* find(std::string_view name) const;
  // Throws UsageError naming the file when the tensor is missing.
  const StTensor& at(std::string_view name) const;

  // Copies of a tensor's values; throw UsageError unless its dtype is exactly the
  // one asked for (no silent conversions). Copying sidesteps alignment questions.
  std::vector<float> f32(std::string_view name) const;
  std::vector<int32_t> i32(std::string_view name) const;
  std::vector<int64_t> i64(std::string_view name) const;

 private:
  struct Storage;
  SafetensorsFile(std::shared_ptr<const Storage> storage, std::string source);
  void index(std::span<const std::byte> bytes);
  template <typename T>
  std::vector<T> copy_as(std::string_view name, StDType want) const;

  std::shared_ptr<const Storage> storage_;
  std::string source_;
  Metadata metadata_;
  std::vector<StTensor> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
};

// One tensor to write: `data` must hold numel × st_dtype_size(dtype) bytes in
// little-endian order (the host order on every machine dstrain runs on).
struct StTensorRef {
  std::string name;
  StDType dtype;
  std::vector<int64_t> shape;
  const void* data;
};

// The complete file as bytes. Tensors keep the caller's order within each element
// size, larger elements first, as the reference writer lays them out, so every
// tensor is naturally aligned in a mapped file. Throws ds::Error on a duplicate or
// reserved name or a negative dimension.
std::string serialize_safetensors(std::span<const StTensorRef> tensors,
                                  const Metadata& metadata = {});

// Writes serialize_safetensors() atomically: a temporary file in the same folder,
// fsync, rename over `path`, fsync of the folder. A crash leaves either the old file
// or the new one, never a torn one. Throws ds::Error naming the path on failure.
void write_safetensors(const std::filesystem::path& path, std::span<const StTensorRef> tensors,
                       const Metadata& metadata = {});

}  // namespace ds::checkpoint
