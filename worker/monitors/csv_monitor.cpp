#include "worker/monitors/csv_monitor.h"

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace ds::worker {
namespace fs = std::filesystem;

std::string python_float(double value) {
  std::string text = fmt::format("{}", value);
  // fmt already prints the shortest round-trip digits and switches to an exponent
  // where Python does; Python marks a whole float with ".0".
  if (text.find_first_of(".ein") == std::string::npos) text += ".0";
  return text;
}

namespace {

// A field as Python's csv.writer (QUOTE_MINIMAL) writes it.
std::string csv_field(std::string_view text) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + '"';
}

}  // namespace

std::string CsvMonitor::file_name(std::string_view event_name) {
  std::string name(event_name);
  for (char& c : name) {
    if (c == '/' || c == ' ') c = '_';
  }
  return name + ".csv";
}

std::string CsvMonitor::column_name(std::string_view event_name) {
  const size_t slash = event_name.rfind('/');
  return std::string(slash == std::string_view::npos ? event_name : event_name.substr(slash + 1));
}

CsvMonitor::CsvMonitor(const config::MonitorConfig& config)
    : log_dir_(fs::path(config.output_path) / config.job_name) {
  std::error_code ec;
  fs::create_directories(log_dir_, ec);
  if (ec) {
    throw UsageError(
        fmt::format("cannot create the csv_monitor folder {}: {}", log_dir_.string(), ec.message()),
        "check csv_monitor.output_path and csv_monitor.job_name in the ds_config");
  }
}

CsvMonitor::~CsvMonitor() {
  for (auto& [name, file] : files_) std::fclose(file);
}

void CsvMonitor::write_events(std::span<const MonitorEvent> events) {
  std::map<std::string, std::FILE*> touched;
  for (const MonitorEvent& event : events) {
    const std::string name = file_name(event.name);
    auto it = files_.find(name);
    if (it == files_.end()) {
      const fs::path path = log_dir_ / name;
      std::error_code ec;
      const bool fresh = !fs::exists(path, ec) || fs::file_size(path, ec) == 0;
      std::FILE* file = std::fopen(path.c_str(), "ab");
      if (file == nullptr) {
        throw Error(fmt::format("cannot write the csv_monitor file {}: {}", path.string(),
                                std::strerror(errno)));
      }
      if (fresh) {
        fmt::print(file, "step,{}\r\n", csv_field(column_name(event.name)));
      }
      it = files_.emplace(name, file).first;
    }
    fmt::print(it->second, "{},{}\r\n", event.step, python_float(event.value));
    touched.emplace(name, it->second);
  }
  for (auto& [name, file] : touched) {
    if (std::fflush(file) != 0) {
      throw Error(fmt::format("writing the csv_monitor file {} failed: {}",
                              (log_dir_ / name).string(), std::strerror(errno)));
    }
  }
}

}  // namespace ds::worker
