// csv_monitor against DeepSpeed's layout: the same files, headers and rows that
// deepspeed/monitor/csv_monitor.py writes for the same events (checked byte for byte
// against Python's csv module when /usr/bin/python3 is there).
#include "worker/monitors/csv_monitor.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "process_helpers.h"

namespace ds::worker {
namespace {

using ds::testing::TempDir;

config::MonitorConfig csv_config(const std::filesystem::path& dir, std::string job = "myjob") {
  config::MonitorConfig c;
  c.enabled = true;
  c.output_path = dir.string();
  c.job_name = std::move(job);
  return c;
}

TEST_CASE("python_float prints a double as Python's repr does", "[csv]") {
  CHECK(python_float(65536.0) == "65536.0");
  CHECK(python_float(0.0003) == "0.0003");
  CHECK(python_float(1e-5) == "1e-05");
  CHECK(python_float(1e16) == "1e+16");
  CHECK(python_float(1.5e15) == "1500000000000000.0");
  CHECK(python_float(0.1 + 0.2) == "0.30000000000000004");
  CHECK(python_float(-0.0) == "-0.0");
  CHECK(python_float(static_cast<double>(5.5451774f)) == "5.545177459716797");
  CHECK(python_float(std::numeric_limits<double>::infinity()) == "inf");
  CHECK(python_float(std::numeric_limits<double>::quiet_NaN()) == "nan");
}

TEST_CASE("csv_monitor names files and columns as DeepSpeed does", "[csv]") {
  CHECK(CsvMonitor::file_name("Train/Samples/train_loss") == "Train_Samples_train_loss.csv");
  CHECK(CsvMonitor::file_name("Train/Samples/my metric") == "Train_Samples_my_metric.csv");
  CHECK(CsvMonitor::column_name("Train/Samples/lr") == "lr");
  CHECK(CsvMonitor::column_name("plain") == "plain");
}

TEST_CASE("csv_monitor writes one file per metric under output_path/job_name", "[csv]") {
  TempDir dir("csv_monitor_test");
  {
    CsvMonitor monitor(csv_config(dir.path()));
    CHECK(monitor.log_dir() == dir.path() / "myjob");
    const MonitorEvent first[] = {{"Train/Samples/train_loss", 5.5, 16},
                                  {"Train/Samples/lr", 0.0003, 16},
                                  {"Train/Samples/loss_scale", 65536.0, 16}};
    monitor.write_events(first);
    const MonitorEvent second[] = {{"Train/Samples/train_loss", 4.25, 32},
                                   {"Train/Samples/lr", 1e-05, 32}};
    monitor.write_events(second);
    // Flushed as written: readable before the monitor closes.
    CHECK(ds::testing::read_file(dir.path() / "myjob" / "Train_Samples_lr.csv") ==
          "step,lr\r\n16,0.0003\r\n32,1e-05\r\n");
  }
  const auto job = dir.path() / "myjob";
  CHECK(ds::testing::read_file(job / "Train_Samples_train_loss.csv") ==
        "step,train_loss\r\n16,5.5\r\n32,4.25\r\n");
  CHECK(ds::testing::read_file(job / "Train_Samples_loss_scale.csv") ==
        "step,loss_scale\r\n16,65536.0\r\n");

  SECTION("a second run appends without a second header") {
    CsvMonitor again(csv_config(dir.path()));
    const MonitorEvent more[] = {{"Train/Samples/train_loss", 3.0, 48}};
    again.write_events(more);
    CHECK(ds::testing::read_file(job / "Train_Samples_train_loss.csv") ==
          "step,train_loss\r\n16,5.5\r\n32,4.25\r\n48,3.0\r\n");
  }
}

TEST_CASE("csv_monitor output matches DeepSpeed's writer byte for byte", "[csv]") {
  if (std::system("/usr/bin/python3 -c 'import csv' > /dev/null 2>&1") != 0) {
    WARN("no /usr/bin/python3: skipping the comparison with Python's csv module");
    return;
  }
  TempDir dir("csv_monitor_py");
  const std::vector<MonitorEvent> events = {{"Train/Samples/train_loss", 5.545177459716797, 8},
                                            {"Train/Samples/lr", 2.9999999999999997e-4, 8},
                                            {"Train/Samples/train_loss", 4.0, 16},
                                            {"Train/Samples/eval_loss", 1e-7, 16}};
  {
    CsvMonitor monitor(csv_config(dir.path() / "ours", "job"));
    monitor.write_events(events);
  }
  // What csvMonitor.write_events does with these events: same naming, csv.writer rows.
  std::string py =
      "import csv, os, sys\n"
      "log_dir = os.path.join(sys.argv[1], 'job'); os.makedirs(log_dir, exist_ok=True)\n"
      "seen = []\n"
      "for name, value, step in [";
  for (const auto& e : events) {
    py += fmt::format("('{}', '{}', {}),", e.name, python_float(e.value), e.step);
  }
  py +=
      "]:\n"
      "    value = float(value)\n"
      "    header = name.split('/')[-1]\n"
      "    filename = name.replace('/', '_').replace(' ', '_')\n"
      "    with open(log_dir + '/' + filename + '.csv', 'a+') as f:\n"
      "        w = csv.writer(f)\n"
      "        if filename not in seen:\n"
      "            seen.append(filename); w.writerow(['step', header])\n"
      "        w.writerow([step, value])\n";
  const std::string script = dir.write("ds_csv.py", py);
  const auto theirs = dir.path() / "theirs";
  REQUIRE(std::system(("/usr/bin/python3 " + script + " " + theirs.string()).c_str()) == 0);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(theirs / "job")) {
    const auto name = entry.path().filename();
    INFO(name);
    CHECK(ds::testing::read_file(dir.path() / "ours" / "job" / name) ==
          ds::testing::read_file(entry.path()));
    ++files;
  }
  CHECK(files == 3);
}

}  // namespace
}  // namespace ds::worker
