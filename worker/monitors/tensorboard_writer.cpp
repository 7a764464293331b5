#include "worker/monitors/tensorboard_writer.h"

#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "util/error.h"

namespace ds::worker {
namespace fs = std::filesystem;

namespace tfevents {
namespace {

static_assert(std::endian::native == std::endian::little,
              "event files are little-endian; this writer copies host integers as they are");

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? 0x82f63b78u : 0u);
    table[i] = crc;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

// Protobuf wire format: what an Event needs of it.
void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
}
void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
}
template <typename T>
void put_fixed(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}
void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}
std::string event_header(double wall_time, int64_t step) {
  std::string event;
  put_key(event, 1, 1);  // wall_time: fixed64 (double)
  put_fixed(event, wall_time);
  if (step != 0) {  // proto3 leaves default values out
    put_key(event, 2, 0);
    put_varint(event, static_cast<uint64_t>(step));  // int64: two's complement varint
  }
  return event;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) crc = kCrcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string record(std::string_view payload) {
  std::string out;
  const uint64_t length = payload.size();
  put_fixed(out, length);
  put_fixed(out, masked_crc32c(out.data(), sizeof length));
  out.append(payload);
  put_fixed(out, masked_crc32c(payload.data(), payload.size()));
  return out;
}

std::string file_version_event(double wall_time) {
  std::string event = event_header(wall_time, 0);
  put_bytes(event, 3, "brain.Event:2");
  return event;
}

std::string scalar_event(double wall_time, int64_t step, std::string_view tag, float value) {
  std::string summary_value;
  put_bytes(summary_value, 1, tag);
  put_key(summary_value, 2, 5);  // simple_value: fixed32 (float)
  put_fixed(summary_value, value);
  std::string summary;
  put_bytes(summary, 1, summary_value);
  std::string event = event_header(wall_time, step);
  put_bytes(event, 5, summary);
  return event;
}

}  // namespace tfevents

namespace {

double unix_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const config::MonitorConfig& config)
    : TensorBoardWriter(fs::path(config.output_path) / config.job_name) {}

TensorBoardWriter::TensorBoardWriter(const fs::path& log_dir) {
  std::error_code ec;
  fs::create_directories(log_dir, ec);
  if (ec) {
    throw UsageError(
        fmt::format("cannot create the tensorboard folder {}: {}", log_dir.string(), ec.message()),
        "check tensorboard.output_path and tensorboard.job_name in the ds_config");
  }
  const double now = unix_time();
  path_ = log_dir / fmt::format("events.out.tfevents.{:010d}.{}.{}.0", static_cast<int64_t>(now),
                                host_name(), ::getpid());
  file_ = std::fopen(path_.c_str(), "wb");
  if (file_ == nullptr) {
    throw UsageError(fmt::format("cannot write the tensorboard event file {}: {}", path_.string(),
                                 std::strerror(errno)),
                     "check tensorboard.output_path in the ds_config");
  }
  append(tfevents::file_version_event(now));
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void TensorBoardWriter::append(const std::string& payload) {
  const std::string bytes = tfevents::record(payload);
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    throw Error(
        fmt::format("writing the event file {} failed: {}", path_.string(), std::strerror(errno)));
  }
}

void TensorBoardWriter::add_scalar(std::string_view tag, double value, int64_t step) {
  add_scalar(tag, value, step, unix_time());
}

void TensorBoardWriter::add_scalar(std::string_view tag, double value, int64_t step,
                                   double wall_time) {
  append(tfevents::scalar_event(wall_time, step, tag, static_cast<float>(value)));
}

void TensorBoardWriter::flush() {
  if (std::fflush(file_) != 0) {
    throw Error(
        fmt::format("writing the event file {} failed: {}", path_.string(), std::strerror(errno)));
  }
}

void TensorBoardWriter::write_events(std::span<const MonitorEvent> events) {
  const double now = unix_time();
  for (const MonitorEvent& event : events) add_scalar(event.name, event.value, event.step, now);
  flush();
}

}  // namespace ds::worker
