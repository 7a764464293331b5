#include "checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "util/error.h"
#include "util/files.h"

namespace ds::checkpoint {
namespace {

constexpr std::string_view kMetadataKey = "__metadata__";
// The reference reader refuses larger headers; a bigger length field is corruption,
// not a real file, and must not make us allocate gigabytes.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

struct DTypeInfo {
  StDType dtype;
  std::string_view name;
  size_t size;
};

constexpr std::array<DTypeInfo, 15> kDTypes{{
    {StDType::kBool, "BOOL", 1},
    {StDType::kU8, "U8", 1},
    {StDType::kI8, "I8", 1},
    {StDType::kF8E5M2, "F8_E5M2", 1},
    {StDType::kF8E4M3, "F8_E4M3", 1},
    {StDType::kU16, "U16", 2},
    {StDType::kI16, "I16", 2},
    {StDType::kF16, "F16", 2},
    {StDType::kBF16, "BF16", 2},
    {StDType::kU32, "U32", 4},
    {StDType::kI32, "I32", 4},
    {StDType::kF32, "F32", 4},
    {StDType::kU64, "U64", 8},
    {StDType::kI64, "I64", 8},
    {StDType::kF64, "F64", 8},
}};

const DTypeInfo& info(StDType dtype) {
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  DS_CHECK(false, "unknown StDType {}", static_cast<int>(dtype));
  __builtin_unreachable();
}

const char* const kCorruptHint =
    "the file is not a valid safetensors file (truncated or corrupted?); write it again";

[[noreturn]] void corrupt(const std::string& source, const std::string& problem) {
  throw UsageError(fmt::format("safetensors file {}: {}", source, problem), kCorruptHint);
}

uint64_t read_le64(const std::byte* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

// numel × element size with overflow checks; nullopt when it does not fit.
std::optional<uint64_t> byte_size(const std::vector<int64_t>& shape, size_t element_size) {
  uint64_t total = element_size;
  for (int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    const auto d = static_cast<uint64_t>(dim);
    if (d != 0 && total > std::numeric_limits<uint64_t>::max() / d) return std::nullopt;
    total *= d;
  }
  return total;
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

size_t st_dtype_size(StDType dtype) { return info(dtype).size; }

std::string_view st_dtype_name(StDType dtype) { return info(dtype).name; }

std::optional<StDType> parse_st_dtype(std::string_view name) {
  for (const auto& entry : kDTypes) {
    if (entry.name == name) return entry.dtype;
  }
  return std::nullopt;
}

int64_t StTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Owns the bytes the tensors point into: a private read-only mapping of the file,
// or a string for parse().
struct SafetensorsFile::Storage {
  std::string owned;
  void* map = nullptr;
  size_t map_size = 0;

  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (map != nullptr) munmap(map, map_size);
  }
  std::span<const std::byte> bytes() const {
    if (map != nullptr) return {static_cast<const std::byte*>(map), map_size};
    return {reinterpret_cast<const std::byte*>(owned.data()), owned.size()};
  }
};

SafetensorsFile::SafetensorsFile(std::shared_ptr<const Storage> storage, std::string source)
    : storage_(std::move(storage)), source_(std::move(source)) {
  index(storage_->bytes());
}

SafetensorsFile SafetensorsFile::load(const std::filesystem::path& path) {
  const std::string source = path.string();
  const int fd = ::open(source.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw UsageError(fmt::format("cannot open safetensors file {}: {}", source, errno_text()),
                     "check the path");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw UsageError(fmt::format("safetensors file {} is not a regular file", source));
  }
  auto storage = std::make_shared<Storage>();
  const auto size = static_cast<size_t>(st.st_size);
  // mmap of an empty file fails; leave it empty and let index() report it as short.
  if (size > 0) {
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      const std::string why = errno_text();
      ::close(fd);
      throw UsageError(fmt::format("cannot map safetensors file {}: {}", source, why));
    }
    storage->map = map;
    storage->map_size = size;
  }
  ::close(fd);  // the mapping keeps the file alive
  return SafetensorsFile(std::move(storage), source);
}

SafetensorsFile SafetensorsFile::parse(std::string bytes, std::string source) {
  auto storage = std::make_shared<Storage>();
  storage->owned = std::move(bytes);
  return SafetensorsFile(std::move(storage), std::move(source));
}

void SafetensorsFile::index(std::span<const std::byte> bytes) {
  if (bytes.size() < 8) {
    corrupt(source_,
            fmt::format("only {} bytes, shorter than the 8-byte header length", bytes.size()));
  }
  const uint64_t header_size = read_le64(bytes.data());
  if (header_size > kMaxHeaderSize) {
    corrupt(source_, fmt::format("header length {} is larger than the {}-byte limit", header_size,
                                 kMaxHeaderSize));
  }
  if (header_size > bytes.size() - 8) {
    corrupt(source_, fmt::format("header length {} goes beyond the end of the file ({} bytes)",
                                 header_size, bytes.size()));
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes.data() + 8), header_size);
  if (header.empty() || header.front() != '{') {
    corrupt(source_, "the header does not start with a JSON object");
  }

  // nlohmann keeps the last of two equal keys; a file naming a tensor twice is
  // ambiguous, so catch duplicates while parsing.
  std::string duplicate;
  std::set<std::string, std::less<>> seen;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      auto key = parsed.get<std::string>();
      if (!seen.insert(key).second) duplicate = std::move(key);
    }
    return true;
  };
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(header.begin(), header.end(), on_event);
  } catch (const nlohmann::json::exception& e) {
    corrupt(source_, fmt::format("the header is not valid JSON: {}", e.what()));
  }
  if (!json.is_object()) corrupt(source_, "the header is not a JSON object");
  if (!duplicate.empty()) corrupt(source_, fmt::format("the header names '{}' twice", duplicate));

  const uint64_t data_size = bytes.size() - 8 - header_size;
  const std::byte* data = bytes.data() + 8 + header_size;
  struct Entry {
    uint64_t begin;
    uint64_t end;
    StTensor tensor;
  };
  std::vector<Entry> entries;
  for (const auto& [name, value] : json.items()) {
    if (name == kMetadataKey) {
      if (!value.is_object()) corrupt(source_, "__metadata__ is not a JSON object");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) {
          corrupt(source_, fmt::format("__metadata__ value of '{}' is not a string", key));
        }
        metadata_.emplace(key, text.get<std::string>());
      }
      continue;
    }
    auto bad = [&](const std::string& problem) {
      corrupt(source_, fmt::format("tensor '{}': {}", name, problem));
    };
    if (!value.is_object()) bad("its entry is not a JSON object");
    const auto dtype_it = value.find("dtype");
    const auto shape_it = value.find("shape");
    const auto offsets_it = value.find("data_offsets");
    if (dtype_it == value.end() || !dtype_it->is_string()) bad("missing or non-string \"dtype\"");
    if (shape_it == value.end() || !shape_it->is_array()) bad("missing or non-array \"shape\"");
    if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      bad("\"data_offsets\" must be an array [begin, end]");
    }
    const auto dtype_name = dtype_it->get<std::string>();
    const auto dtype = parse_st_dtype(dtype_name);
    if (!dtype) bad(fmt::format("unknown dtype \"{}\"", dtype_name));

    StTensor tensor{name, *dtype, {}, {}};
    for (const auto& dim : *shape_it) {
      if (!dim.is_number_unsigned() ||
          dim.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        bad(fmt::format("shape {} has an entry that is not a non-negative integer",
                        shape_it->dump()));
      }
      tensor.shape.push_back(static_cast<int64_t>(dim.get<uint64_t>()));
    }
    for (const auto& offset : *offsets_it) {
      if (!offset.is_number_unsigned()) {
        bad(fmt::format("data_offsets {} are not non-negative integers", offsets_it->dump()));
      }
    }
    const auto begin = (*offsets_it)[0].get<uint64_t>();
    const auto end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end) bad(fmt::format("data_offsets [{}, {}] end before they begin", begin, end));
    if (end > data_size) {
      bad(fmt::format("data_offsets [{}, {}] go beyond the {}-byte data section", begin, end,
                      data_size));
    }
    const auto expected = byte_size(tensor.shape, st_dtype_size(*dtype));
    if (!expected || *expected != end - begin) {
      bad(fmt::format("shape {} of {} needs {} bytes but data_offsets [{}, {}] span {}",
                      shape_it->dump(), dtype_name,
                      expected ? std::to_string(*expected) : std::string("too many"), begin, end,
                      end - begin));
    }
    tensor.data = {data + begin, static_cast<size_t>(end - begin)};
    entries.push_back({begin, end, std::move(tensor)});
  }

  // Like the reference: the tensors must tile the data section exactly, in offset
  // order, so no byte is shared by two tensors and none is unaccounted for.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const auto& entry : entries) {
    if (entry.begin < cursor) {
      corrupt(source_, fmt::format("tensor '{}' (data_offsets [{}, {}]) overlaps the tensor "
                                   "before it, which ends at {}",
                                   entry.tensor.name, entry.begin, entry.end, cursor));
    }
    if (entry.begin > cursor) {
      corrupt(source_, fmt::format("bytes [{}, {}) of the data section belong to no tensor (a hole "
                                   "before '{}')",
                                   cursor, entry.begin, entry.tensor.name));
    }
    cursor = entry.end;
  }
  if (cursor != data_size) {
    corrupt(source_, fmt::format("the tensors cover {} bytes but the data section holds {}", cursor,
                                 data_size));
  }

  tensors_.reserve(entries.size());
  for (auto& entry : entries) {
    by_name_.emplace(entry.tensor.name, tensors_.size());
    tensors_.push_back(std::move(entry.tensor));
  }
}

bool SafetensorsFile::contains(std::string_view name) const { return find(name) != nullptr; }

const StTensor* SafetensorsFile::find(std::string_view name) const {
  const auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const StTensor& SafetensorsFile::at(std::string_view name) const {
  const StTensor* tensor = find(name);
  if (tensor == nullptr) {
    throw UsageError(fmt::format("safetensors file {} has no tensor '{}'", source_, name),
                     "was it written by another version or for another model?");
  }
  return *tensor;
}

template <typename T>
std::vector<T> SafetensorsFile::copy_as(std::string_view name, StDType want) const {
  const StTensor& tensor = at(name);
  if (tensor.dtype != want) {
    throw UsageError(fmt::format("safetensors file {}: tensor '{}' is {}, expected {}", source_,
                                 name, st_dtype_name(tensor.dtype), st_dtype_name(want)));
  }
  std::vector<T> out(tensor.data.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), tensor.data.data(), tensor.data.size());
  return out;
}

std::vector<float> SafetensorsFile::f32(std::string_view name) const {
  return copy_as<float>(name, StDType::kF32);
}
std::vector<int32_t> SafetensorsFile::i32(std::string_view name) const {
  return copy_as<int32_t>(name, StDType::kI32);
}
std::vector<int64_t> SafetensorsFile::i64(std::string_view name) const {
  return copy_as<int64_t>(name, StDType::kI64);
}

std::string serialize_safetensors(std::span<const StTensorRef> tensors, const Metadata& metadata) {
  std::vector<const StTensorRef*> order;
  std::set<std::string_view> names;
  for (const auto& t : tensors) {
    if (t.name == kMetadataKey) {
      throw Error(fmt::format("'{}' is reserved and cannot name a tensor", t.name));
    }
    if (!names.insert(t.name).second) {
      throw Error(fmt::format("two tensors named '{}' in one safetensors file", t.name));
    }
    order.push_back(&t);
  }
  std::stable_sort(order.begin(), order.end(), [](const StTensorRef* a, const StTensorRef* b) {
    return st_dtype_size(a->dtype) > st_dtype_size(b->dtype);
  });

  // Key order as the reference writes it: __metadata__ first, then by offset.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const StTensorRef* t : order) {
    const auto size = byte_size(t->shape, st_dtype_size(t->dtype));
    if (!size) {
      throw Error(fmt::format("tensor '{}' has a negative or too large shape", t->name));
    }
    DS_CHECK(t->data != nullptr || *size == 0, "tensor '{}' has no data", t->name);
    nlohmann::ordered_json entry;
    entry["dtype"] = st_dtype_name(t->dtype);
    entry["shape"] = t->shape;
    entry["data_offsets"] = {offset, offset + *size};
    header[t->name] = std::move(entry);
    sizes.push_back(*size);
    offset += *size;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + json.size() + offset);
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += json;
  for (size_t i = 0; i < order.size(); ++i) {
    out.append(static_cast<const char*>(order[i]->data), sizes[i]);
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path, std::span<const StTensorRef> tensors,
                       const Metadata& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

}  // namespace ds::checkpoint
