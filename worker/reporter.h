// Everything a user sees of a training run, in one place: the start banner, the
// progress of each step, evaluations, memory, the end — on the terminal, in the
// metrics file (JSON lines) and in the ds_config's monitors (csv_monitor,
// tensorboard). The trainer calls it; it decides what to show where.
//
// Terminal. Rank 0 reports; the other ranks print only their memory reports. On a
// terminal (stderr is a TTY and no launcher set RANK) a live line shows step/total,
// loss, tokens/s, MFU and ETA, redrawn in place; every steps_per_print steps, and
// for evaluations and memory, a plain line is printed above it. Elsewhere (logs,
// CI, dslaunch) only the plain lines appear. --quiet keeps warnings, samples and
// the final line; --verbose prints every step and memory by category at every print.
//
// Metrics file. One JSON object per printed step (loss, lr, grad_norm, loss_scale,
// tokens/s, samples/s, TFLOP/s, MFU, memory by category, the wall-clock breakdown),
// per evaluation and per memory report. "{rank}" in the path gives every rank its
// own file; without it only rank 0 writes.
//
// Monitors (rank 0, as DeepSpeed). Every step, with DeepSpeed's event names and its
// step axis, the samples seen so far (global_samples): Train/Samples/train_loss,
// Train/Samples/lr, Train/Samples/loss_scale (fp16), Train/Samples/eval_loss and,
// with wall_clock_breakdown, Train/Samples/elapsed_time_ms_{forward,backward,
// backward_allreduce,step}. dstrain adds Train/Samples/grad_norm every step and
// Train/Samples/tokens_per_s and Train/Samples/mfu at every print.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/train_config.h"
#include "worker/metrics_writer.h"
#include "worker/monitors/monitor.h"
#include "zero/engine.h"

namespace ds::worker {

struct ReportOptions {
  std::string metrics_path;     // JSON lines; "{rank}" gives one file per rank; "" none
  bool append_metrics = false;  // a resumed run continues the file instead of truncating it
  bool quiet = false;
  bool verbose = false;
  // Where lines go. nullptr: plain lines through ds::log (stderr, with the program's
  // prefix) and the live line to stderr. Tests pass a stream to read them back.
  std::FILE* stream = nullptr;
  std::optional<bool> live;          // force the live line on or off; default: detect
  std::optional<double> peak_flops;  // FLOP/s per device; skips the start-up measurement
                                     // (0: no MFU). Default: env DS_PEAK_TFLOPS, else measure
};

// What the start banner reports beyond the config.
struct RunInfo {
  int64_t parameters = 0;  // trainable, a tied embedding once
  std::string data_source;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;  // 0: no validation stream
  bool val_from_train = false;
  int64_t first_step = 0;   // optimizer steps already done (a resumed run)
  std::string device_name;  // a CUDA device name for the GPU peak table; "" on the CPU
};

// wall_clock_breakdown: seconds one optimizer step spent in each part.
struct StepTimes {
  double forward_s = 0;
  double backward_s = 0;   // including the communication it overlaps with
  double optimizer_s = 0;  // gradient norm, clipping, the update
  double comm_s = 0;       // reduce-scatter / all-reduce / all-gather not hidden by compute
};

class Reporter {
 public:
  // `cfg` must outlive the reporter (the trainer's own copy). `world`: all ranks, for
  // FLOP/s per rank and MFU. Creates the metrics file and the monitors' folders.
  Reporter(const config::TrainConfig& cfg, const ReportOptions& options, int rank, int world);
  ~Reporter();  // clears the live line, so that an error message starts on a clean line
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;

  // The banner (model, data, batch, precision, peak FLOP/s) and the first memory report.
  void on_start(const RunInfo& info, const zero::MemoryReport& memory);
  // After optimizer step `step` (counted from 1) took `step_seconds`.
  void on_step(int64_t step, const zero::StepStats& stats, double step_seconds,
               const StepTimes* times = nullptr);
  void on_eval(int64_t step, double val_loss);
  void on_memory(const char* when, const zero::MemoryReport& memory);
  void on_finish(int64_t steps_done);
  // Generated text, printed even with --quiet (the user asked for it).
  void print_sample(std::string_view text);
  // Any other line from the trainer (a checkpoint written, ...): printed above the
  // live line instead of through it. warn: as a warning, shown even with --quiet.
  void note(const std::string& line, bool warn = false);

  bool live() const { return live_; }
  double peak_flops() const { return peak_flops_; }  // per device; 0: unknown
  double flops_per_token() const { return flops_per_token_; }
  int64_t tokens_per_step() const { return tokens_per_step_; }

 private:
  using Clock = std::chrono::steady_clock;
  bool prints() const { return rank_ == 0 && !options_.quiet; }
  // force: past the log level, which other ranks may have raised to warnings.
  void emit(const std::string& line, bool warn = false, bool force = false);
  void draw_live(int64_t step, double loss);
  void clear_live();
  void print_step(int64_t step, const zero::StepStats& stats, double window_s, int64_t window_steps,
                  const StepTimes& times, bool have_times);
  void monitor(std::vector<MonitorEvent> events);

  const config::TrainConfig& cfg_;
  ReportOptions options_;
  int rank_, world_;
  bool live_ = false;
  bool live_shown_ = false;
  int64_t tokens_per_step_ = 0;
  double flops_per_token_ = 0;
  double peak_flops_ = 0;
  MetricsWriter metrics_;
  std::vector<std::unique_ptr<Monitor>> monitors_;

  Clock::time_point start_;
  Clock::time_point last_draw_{};
  Clock::time_point first_done_{};
  int64_t first_step_ = 0;       // steps done before this run (resume)
  int64_t first_done_step_ = 0;  // the step at first_done_
  double train_seconds_ = 0;     // sum of step_seconds
  int64_t steps_seen_ = 0;
  // Since the last print.
  double window_s_ = 0;
  int64_t window_steps_ = 0;
  StepTimes window_times_;
  bool window_have_times_ = false;
  double last_tokens_per_s_ = 0;
};

// Shared formatting: 842.5K, 1.24M; 4m10s; 41.2 GFLOP/s.
std::string human_count(double value);
std::string human_duration(double seconds);
std::string human_flops(double flops_per_s);

}  // namespace ds::worker
