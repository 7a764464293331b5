// TensorBoard event files, written directly: no TensorFlow, no protobuf library.
//
// An event file is a sequence of TFRecords, each
//   uint64 length | uint32 masked_crc32c(length) | payload | uint32 masked_crc32c(payload)
// (little-endian; masked = rotate right by 15, plus 0xa282ead8), and each payload is
// a serialized tensorflow.Event protobuf:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
//             Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; }
// The first record carries file_version "brain.Event:2"; every scalar is one more
// Event, as torch.utils.tensorboard's add_scalar writes it (which is what DeepSpeed's
// tensorboard monitor uses). The file is named like that writer's,
// events.out.tfevents.<unix time>.<host>.<pid>.0, under output_path/job_name.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include "config/ds_config.h"
#include "worker/monitors/monitor.h"

namespace ds::worker {

namespace tfevents {

// CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), as TFRecord uses it.
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);
// One TFRecord around `payload`.
std::string record(std::string_view payload);
// Serialized Event messages.
std::string file_version_event(double wall_time);
std::string scalar_event(double wall_time, int64_t step, std::string_view tag, float value);

}  // namespace tfevents

class TensorBoardWriter final : public Monitor {
 public:
  // Creates output_path/job_name (output_path "" means the current folder, as in
  // DeepSpeed) and a new event file in it.
  explicit TensorBoardWriter(const config::MonitorConfig& config);
  explicit TensorBoardWriter(const std::filesystem::path& log_dir);
  ~TensorBoardWriter() override;
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Appends a scalar (stored as a float, like TensorBoard's simple_value).
  void add_scalar(std::string_view tag, double value, int64_t step);
  void add_scalar(std::string_view tag, double value, int64_t step, double wall_time);
  void flush();
  // add_scalar for each event, then flush.
  void write_events(std::span<const MonitorEvent> events) override;

 private:
  void append(const std::string& payload);

  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

}  // namespace ds::worker
