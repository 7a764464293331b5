// Running the project's programs from tests: exit code and output, temp folders.
#pragma once

#include <fmt/format.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ds::testing {

struct Run {
  int code = -1;    // exit code, or 128 + signal
  std::string out;  // stdout and stderr together
};

inline Run run(const std::string& command) {
  Run r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) r.out.append(buffer, n);
  const int status = pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// The build and source folders the tests were built in, unless DS_TEST_BINARY_DIR and
// DS_TEST_SOURCE_DIR say otherwise (scripts/gpu-check.sh runs prebuilt tests elsewhere).
inline std::string test_dir(const char* variable, const char* built_in) {
  const char* value = std::getenv(variable);
  return value != nullptr && *value != '\0' ? value : built_in;
}
inline const std::string kBin = test_dir("DS_TEST_BINARY_DIR", DS_BINARY_DIR) + "/bin/";
inline const std::string kSource = test_dir("DS_TEST_SOURCE_DIR", DS_SOURCE_DIR);

// A whole file as bytes ("" when it cannot be read: tests check contents, not errors).
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The values of `key` in a JSON-lines metrics file, in order (lines without it skipped).
inline std::vector<double> metric_values(const std::filesystem::path& metrics,
                                         const std::string& key) {
  std::vector<double> out;
  std::istringstream lines(read_file(metrics));
  const std::string quoted = "\"" + key + "\":";
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find(quoted);
    if (at != std::string::npos) out.push_back(std::stod(line.substr(at + quoted.size())));
  }
  return out;
}

// A deterministic training text of about `bytes` bytes: numbered lines of varied words.
inline std::string training_text(size_t bytes) {
  std::string text;
  for (int i = 0; text.size() < bytes; ++i) {
    text +=
        fmt::format("entry {}: {} the log is {}\n", i * 7919 % 1009,
                    std::string(static_cast<size_t>(i % 9 + 1), static_cast<char>('a' + i % 26)),
                    i % 3 ? "well" : "quiet");
  }
  return text;
}

// A fresh folder under the system temp dir, removed when the test case ends: named
// after `name` and the process, or (default) a unique mkdtemp folder.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "ds_test_XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  explicit TempDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
    return file(name);
  }

 private:
  std::filesystem::path path_;
};

// A training run: its output, its metrics file and the losses logged there.
struct TrainingRun {
  std::string out;
  std::string metrics;
  std::vector<double> losses;
};

// Writes `config` to dir/run.yaml and runs `command <that file> --metrics dir/run.jsonl <args>`
// (`command`: a program with its options and any environment in front, e.g.
// kBin + "dslaunch --num_gpus 2"), the metrics file removed first since a resumed run appends
// to it. The run must succeed.
inline TrainingRun run_training(const TempDir& dir, const std::string& command,
                                const std::string& config, const std::string& args = "") {
  const std::string path = dir.write("run.yaml", config);
  TrainingRun t;
  t.metrics = dir.file("run.jsonl");
  std::filesystem::remove(t.metrics);
  const Run r = run(command + " " + path + " --metrics " + t.metrics + " " + args);
  INFO(r.out);
  REQUIRE(r.code == 0);
  t.out = r.out;
  t.losses = metric_values(t.metrics, "loss");
  return t;
}

}  // namespace ds::testing
