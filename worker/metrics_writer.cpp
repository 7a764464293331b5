#include "worker/metrics_writer.h"

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace ds::worker {

MetricsWriter::MetricsWriter(const std::string& path_template, int rank, bool append) {
  std::string path = path_template;
  for (size_t at; (at = path.find("{rank}")) != std::string::npos;) {
    path.replace(at, 6, std::to_string(rank));
  }
  path_ = path;
  std::error_code ec;
  if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path(), ec);
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (file_ == nullptr) {
    throw UsageError(
        fmt::format("cannot write the metrics file {}: {}", path, std::strerror(errno)),
        "check log.metrics in the train.cfg or --metrics");
  }
}

MetricsWriter::~MetricsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

MetricsWriter::MetricsWriter(MetricsWriter&& other) noexcept
    : file_(std::exchange(other.file_, nullptr)), path_(std::move(other.path_)) {}

MetricsWriter& MetricsWriter::operator=(MetricsWriter&& other) noexcept {
  if (this != &other) {
    if (file_ != nullptr) std::fclose(file_);
    file_ = std::exchange(other.file_, nullptr);
    path_ = std::move(other.path_);
  }
  return *this;
}

void MetricsWriter::write(const nlohmann::ordered_json& record) {
  if (file_ == nullptr) return;
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    throw Error(fmt::format("writing the metrics file {} failed: {}", path_.string(),
                            std::strerror(errno)));
  }
}

}  // namespace ds::worker
