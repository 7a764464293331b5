// DeepSpeed's csv_monitor: one CSV file per metric under output_path/job_name/.
//
// As deepspeed/monitor/csv_monitor.py lays them out: the event "Train/Samples/lr"
// goes to "Train_Samples_lr.csv" ('/' and ' ' become '_'), whose first row is
// "step,<the last '/'-separated part of the name>" and every further row
// "<step>,<value>", written as Python's csv module writes (CRLF line ends, values
// as Python prints a float). Files are appended to, like DeepSpeed's; unlike
// DeepSpeed, the header is written only when the file is new or empty, so that a
// resumed run does not put a second header in the middle of the file.
#pragma once

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "config/ds_config.h"
#include "worker/monitors/monitor.h"

namespace ds::worker {

class CsvMonitor final : public Monitor {
 public:
  // Creates output_path/job_name (output_path "" means the current folder, as in
  // DeepSpeed). Throws UsageError when it cannot.
  explicit CsvMonitor(const config::MonitorConfig& config);
  ~CsvMonitor() override;
  CsvMonitor(const CsvMonitor&) = delete;
  CsvMonitor& operator=(const CsvMonitor&) = delete;

  const std::filesystem::path& log_dir() const { return log_dir_; }
  void write_events(std::span<const MonitorEvent> events) override;

  // The file an event name goes to, and the header of its value column.
  static std::string file_name(std::string_view event_name);
  static std::string column_name(std::string_view event_name);

 private:
  std::filesystem::path log_dir_;
  std::map<std::string, std::FILE*> files_;
};

// A double as Python's repr() prints a float: the shortest text that reads back to
// the same value, with ".0" on whole numbers ("65536.0", "0.0003", "1e-05", "inf").
std::string python_float(double value);

}  // namespace ds::worker
