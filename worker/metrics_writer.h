// The metrics file: JSON lines, one object per printed step and one per eval,
// flushed as written so that a crashed or interrupted run keeps what it logged.
#pragma once

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace ds::worker {

class MetricsWriter {
 public:
  MetricsWriter() = default;  // writes nothing
  // Creates the parent folder and truncates the file (appends when `append`, for a
  // resumed run); "{rank}" in the path is replaced.
  MetricsWriter(const std::string& path_template, int rank, bool append = false);
  ~MetricsWriter();
  MetricsWriter(MetricsWriter&& other) noexcept;
  MetricsWriter& operator=(MetricsWriter&& other) noexcept;
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  bool enabled() const { return file_ != nullptr; }
  const std::filesystem::path& path() const { return path_; }
  void write(const nlohmann::ordered_json& record);

 private:
  std::FILE* file_ = nullptr;
  std::filesystem::path path_;
};

}  // namespace ds::worker
