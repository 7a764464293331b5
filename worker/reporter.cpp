#include "worker/reporter.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "tensor/memory.h"
#include "util/log.h"
#include "worker/mfu.h"
#include "worker/monitors/csv_monitor.h"
#include "worker/monitors/tensorboard_writer.h"

namespace ds::worker {
namespace {

using tensor::MemoryCategory;

double seconds_between(std::chrono::steady_clock::time_point a,
                       std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double mib(double bytes) { return bytes / (1 << 20); }

const char* precision_name(const config::DsConfig& ds) {
  return ds.bf16.enabled ? "bf16" : ds.fp16.enabled ? "fp16" : "fp32";
}

bool stderr_is_terminal() {
  if (std::getenv("RANK") != nullptr) return false;  // under dslaunch: output goes through pipes
  const char* term = std::getenv("TERM");
  if (term != nullptr && std::string_view(term) == "dumb") return false;
  return ::isatty(STDERR_FILENO) == 1;
}

size_t terminal_width(std::FILE* stream) {
  winsize size{};
  if (::ioctl(::fileno(stream), TIOCGWINSZ, &size) == 0 && size.ws_col >= 20) return size.ws_col;
  return 100;
}

// A memory tracker's categories as a JSON object and as "params 3.2 MiB | ...": the host's,
// and the device's when the run holds device memory (a GPU run's model states).
nlohmann::ordered_json memory_json(const tensor::MemoryTracker& tracker) {
  nlohmann::ordered_json out;
  for (int c = 0; c < tensor::kNumMemoryCategories; ++c) {
    const auto category = static_cast<MemoryCategory>(c);
    out[std::string(tensor::memory_category_name(category))] = tracker.bytes(category);
  }
  out["total"] = tracker.total();
  out["peak_total"] = tracker.peak_total();
  return out;
}

const tensor::MemoryTracker& host_memory() { return tensor::MemoryTracker::instance(); }
const tensor::MemoryTracker& device_memory() { return tensor::MemoryTracker::device_instance(); }
bool uses_device_memory() { return device_memory().peak_total() > 0; }

std::string memory_text(const tensor::MemoryTracker& tracker) {
  std::string text;
  for (int c = 0; c < tensor::kNumMemoryCategories; ++c) {
    const auto category = static_cast<MemoryCategory>(c);
    text += fmt::format("{} {:.1f} MiB | ", tensor::memory_category_name(category),
                        mib(static_cast<double>(tracker.bytes(category))));
  }
  return text + fmt::format("total {:.1f} MiB (peak {:.1f} MiB)",
                            mib(static_cast<double>(tracker.total())),
                            mib(static_cast<double>(tracker.peak_total())));
}

std::string memory_text() {
  std::string text = memory_text(host_memory());
  if (uses_device_memory()) text += " || device: " + memory_text(device_memory());
  return text;
}

std::optional<double> env_peak_flops() {
  const char* text = std::getenv("DS_PEAK_TFLOPS");
  if (text == nullptr || *text == '\0') return std::nullopt;
  char* end = nullptr;
  const double tflops = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(tflops >= 0) || !std::isfinite(tflops)) {
    throw UsageError(fmt::format("DS_PEAK_TFLOPS={} is not a number of TFLOP/s", text),
                     "set it to the peak TFLOP/s of one device, e.g. DS_PEAK_TFLOPS=0.19, or "
                     "unset it to measure");
  }
  return tflops * 1e12;
}

}  // namespace

std::string human_count(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}B", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string human_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string human_flops(double f) {
  if (f >= 1e12) return fmt::format("{:.1f} TFLOP/s", f / 1e12);
  if (f >= 1e9) return fmt::format("{:.1f} GFLOP/s", f / 1e9);
  return fmt::format("{:.1f} MFLOP/s", f / 1e6);
}

Reporter::Reporter(const config::TrainConfig& cfg, const ReportOptions& options, int rank,
                   int world)
    : cfg_(cfg), options_(options), rank_(rank), world_(world), start_(Clock::now()) {
  if (options_.quiet && options_.verbose) {
    throw UsageError("--quiet and --verbose contradict each other", "give at most one of them");
  }
  if (cfg.ds.wandb.enabled) {  // the config layer refuses it first; this keeps the promise here
    throw UsageError(
        "the wandb monitor needs the network and a Python client; dsworker has neither",
        "set wandb.enabled to false and use tensorboard or csv_monitor");
  }
  live_ = options_.live.value_or(rank_ == 0 && !options_.quiet && !options_.verbose &&
                                 options_.stream == nullptr && stderr_is_terminal());
  tokens_per_step_ = cfg.ds.batch.train_batch_size * cfg.data.seq_len;
  flops_per_token_ = worker::flops_per_token(cfg.model.parameter_count(), cfg.model.n_layer,
                                             cfg.model.n_embd, cfg.data.seq_len);
  if (!options_.metrics_path.empty() &&
      (rank_ == 0 || options_.metrics_path.find("{rank}") != std::string::npos)) {
    metrics_ = MetricsWriter(options_.metrics_path, rank_, options_.append_metrics);
  }
  if (rank_ == 0) {  // DeepSpeed's monitors write on global rank 0 only
    if (cfg.ds.csv_monitor.enabled) {
      monitors_.push_back(std::make_unique<CsvMonitor>(cfg.ds.csv_monitor));
    }
    if (cfg.ds.tensorboard.enabled) {
      monitors_.push_back(std::make_unique<TensorBoardWriter>(cfg.ds.tensorboard));
    }
  }
}

Reporter::~Reporter() { clear_live(); }

void Reporter::emit(const std::string& line, bool warn, bool force) {
  clear_live();
  if (options_.stream != nullptr) {
    fmt::print(options_.stream, "{}{}\n", warn ? "warning: " : "", line);
    std::fflush(options_.stream);
  } else if (warn) {
    log::warn("{}", line);
  } else if (force) {
    log::write(log::Level::kInfo, line);
  } else {
    log::info("{}", line);
  }
}

void Reporter::clear_live() {
  if (!live_shown_) return;
  std::FILE* out = options_.stream != nullptr ? options_.stream : stderr;
  std::fputs("\r\033[K", out);
  std::fflush(out);
  live_shown_ = false;
}

void Reporter::draw_live(int64_t step, double loss) {
  const int64_t steps = cfg_.train.steps;
  const auto now = Clock::now();
  if (live_shown_ && step != steps && seconds_between(last_draw_, now) < 0.1) return;
  last_draw_ = now;
  std::string line =
      fmt::format("step {}/{} {:.1f}% | loss {:.4f}", step, steps,
                  100.0 * static_cast<double>(step) / static_cast<double>(steps), loss);
  if (last_tokens_per_s_ > 0) line += fmt::format(" | {:.0f} tok/s", last_tokens_per_s_);
  if (peak_flops_ > 0 && last_tokens_per_s_ > 0) {
    line += fmt::format(" | MFU {:.1f}%",
                        100.0 * flops_per_token_ * last_tokens_per_s_ / world_ / peak_flops_);
  }
  if (step > first_done_step_ && step < steps) {
    const double per_step =
        seconds_between(first_done_, now) / static_cast<double>(step - first_done_step_);
    line += " | ETA " + human_duration(per_step * static_cast<double>(steps - step));
  }
  std::FILE* out = options_.stream != nullptr ? options_.stream : stderr;
  const size_t width = terminal_width(out) - 1;  // never wrap: \r only returns within a line
  if (line.size() > width) line.resize(width);
  fmt::print(out, "\r\033[K{}", line);
  std::fflush(out);
  live_shown_ = true;
}

void Reporter::on_start(const RunInfo& info, const zero::MemoryReport& memory) {
  start_ = Clock::now();
  first_step_ = info.first_step;
  first_done_step_ = info.first_step;
  first_done_ = start_;

  if (options_.peak_flops) {
    peak_flops_ = *options_.peak_flops;
  } else if (auto env = env_peak_flops()) {
    peak_flops_ = *env;
  } else if (!info.device_name.empty()) {
    const Precision p = cfg_.ds.bf16.enabled   ? Precision::kBf16
                        : cfg_.ds.fp16.enabled ? Precision::kFp16
                                               : Precision::kFp32;
    peak_flops_ = gpu_peak_flops(info.device_name, p).value_or(0);
  } else {
    const PeakFlops peak = measure_cpu_peak();
    peak_flops_ = peak.flops_per_s;
    if (prints())
      emit(fmt::format("peak: {} per rank ({})", human_flops(peak_flops_), peak.source));
  }

  if (prints()) {
    const auto& m = cfg_.model;
    const auto& ds = cfg_.ds;
    emit(fmt::format("model {}: {} layers, {} heads, {} wide, vocab {}, {} parameters",
                     m.preset.empty() ? m.arch : m.preset, m.n_layer, m.n_head, m.n_embd,
                     m.vocab_size, human_count(static_cast<double>(info.parameters))));
    emit(fmt::format("data: {} train tokens from {}{}",
                     human_count(static_cast<double>(info.train_tokens)), info.data_source,
                     info.val_tokens == 0
                         ? std::string(", no validation")
                         : fmt::format(", {} validation tokens{}",
                                       human_count(static_cast<double>(info.val_tokens)),
                                       info.val_from_train ? " (held out from train)" : "")));
    const std::string schedule = config::scheduler_name(ds.scheduler);
    emit(fmt::format(
        "batch: {} sequences of {} tokens per step ({} micro x {} accumulation x {} ranks), "
        "{} steps{}, {} {}, ZeRO stage {}, {}",
        ds.batch.train_batch_size, cfg_.data.seq_len, ds.batch.micro_batch_per_gpu,
        ds.batch.gradient_accumulation_steps, ds.batch.dp_size, cfg_.train.steps,
        first_step_ > 0 ? fmt::format(" (resuming after {})", first_step_) : "",
        ds.optimizer.type_name, schedule.empty() ? "constant lr" : schedule, ds.zero.stage,
        precision_name(ds)));
    emit(fmt::format("compute: {} FLOPs per token (6N + 6LCT); {}", human_count(flops_per_token_),
                     peak_flops_ > 0 ? fmt::format("peak {} per rank", human_flops(peak_flops_))
                                     : std::string("peak unknown, no MFU")));
    std::vector<std::string> monitors;
    if (cfg_.ds.csv_monitor.enabled) {
      monitors.push_back(
          "csv_monitor in " +
          (std::filesystem::path(cfg_.ds.csv_monitor.output_path) / cfg_.ds.csv_monitor.job_name)
              .string());
    }
    if (cfg_.ds.tensorboard.enabled) {
      monitors.push_back(
          "tensorboard in " +
          (std::filesystem::path(cfg_.ds.tensorboard.output_path) / cfg_.ds.tensorboard.job_name)
              .string());
    }
    if (metrics_.enabled()) monitors.push_back("metrics in " + metrics_.path().string());
    if (!monitors.empty()) {
      std::string text = "logging: ";
      for (size_t i = 0; i < monitors.size(); ++i) text += (i ? ", " : "") + monitors[i];
      emit(text);
    }
  }
  on_memory("at start", memory);
}

void Reporter::monitor(std::vector<MonitorEvent> events) {
  for (auto& m : monitors_) m->write_events(events);
}

void Reporter::on_step(int64_t step, const zero::StepStats& stats, double step_seconds,
                       const StepTimes* times) {
  const auto now = Clock::now();
  if (steps_seen_ == 0) {
    // The first step warms caches and allocators: ETAs count from its end.
    first_done_ = now;
    first_done_step_ = step;
  }
  ++steps_seen_;
  train_seconds_ += step_seconds;
  window_s_ += step_seconds;
  ++window_steps_;
  if (times != nullptr) {
    window_times_.forward_s += times->forward_s;
    window_times_.backward_s += times->backward_s;
    window_times_.optimizer_s += times->optimizer_s;
    window_times_.comm_s += times->comm_s;
    window_have_times_ = true;
  }

  if (stats.skipped && rank_ == 0) {
    emit(fmt::format("step {}: gradient overflow at loss scale {}; the step is skipped", step,
                     stats.loss_scale),
         /*warn=*/true);
  }

  if (!monitors_.empty()) {
    const int64_t samples = step * cfg_.ds.batch.train_batch_size;
    std::vector<MonitorEvent> events = {
        {"Train/Samples/train_loss", stats.loss, samples},
        {"Train/Samples/lr", stats.lr, samples},
        {"Train/Samples/grad_norm", stats.grad_norm, samples},
    };
    if (cfg_.ds.fp16.enabled)
      events.push_back({"Train/Samples/loss_scale", stats.loss_scale, samples});
    if (times != nullptr && cfg_.ds.wall_clock_breakdown) {
      events.push_back({"Train/Samples/elapsed_time_ms_forward", 1e3 * times->forward_s, samples});
      events.push_back(
          {"Train/Samples/elapsed_time_ms_backward", 1e3 * times->backward_s, samples});
      events.push_back(
          {"Train/Samples/elapsed_time_ms_backward_allreduce", 1e3 * times->comm_s, samples});
      events.push_back({"Train/Samples/elapsed_time_ms_step", 1e3 * times->optimizer_s, samples});
    }
    monitor(std::move(events));
  }

  const int64_t steps = cfg_.train.steps;
  const bool print_now =
      step % cfg_.ds.steps_per_print == 0 || step == first_step_ + 1 || step == steps;
  if (options_.verbose && rank_ == 0 && !print_now) {
    // Every step on the terminal, over this step alone; the metrics file keeps its cadence.
    const double tps = static_cast<double>(tokens_per_step_) / std::max(step_seconds, 1e-9);
    emit(fmt::format("step {:>6}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.4f} | {:.0f} tok/s",
                     step, steps, stats.loss, stats.lr, stats.grad_norm, tps));
  }
  if (print_now) {
    print_step(step, stats, window_s_, window_steps_, window_times_, window_have_times_);
    window_s_ = 0;
    window_steps_ = 0;
    window_times_ = {};
    window_have_times_ = false;
  }
  if (live_) draw_live(step, stats.loss);
}

void Reporter::print_step(int64_t step, const zero::StepStats& stats, double window_s,
                          int64_t window_steps, const StepTimes& times, bool have_times) {
  const int64_t steps = cfg_.train.steps;
  const double n = static_cast<double>(window_steps);
  const double tokens_per_s = static_cast<double>(tokens_per_step_) * n / std::max(window_s, 1e-9);
  const double samples_per_s =
      static_cast<double>(cfg_.ds.batch.train_batch_size) * n / std::max(window_s, 1e-9);
  const double flops_per_rank = flops_per_token_ * tokens_per_s / world_;
  const double mfu = peak_flops_ > 0 ? flops_per_rank / peak_flops_ : 0;
  const double elapsed = seconds_between(start_, Clock::now());
  last_tokens_per_s_ = tokens_per_s;

  if (prints()) {
    std::string line = fmt::format("step {:>6}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.4f}",
                                   step, steps, stats.loss, stats.lr, stats.grad_norm);
    if (cfg_.ds.fp16.enabled) line += fmt::format(" | scale {}", stats.loss_scale);
    line += fmt::format(" | {:.0f} tok/s | {:.1f} samples/s | {}", tokens_per_s, samples_per_s,
                        human_flops(flops_per_rank));
    if (peak_flops_ > 0) line += fmt::format(" | MFU {:.1f}%", 100 * mfu);
    line += fmt::format(" | mem {:.1f} MiB", mib(static_cast<double>(tensor::memory_total())));
    if (uses_device_memory()) {
      line +=
          fmt::format(" + {:.1f} MiB device", mib(static_cast<double>(device_memory().total())));
    }
    line += fmt::format(" | {:.1f} s", elapsed);
    if (step > first_done_step_ && step < steps) {
      const double per_step =
          seconds_between(first_done_, Clock::now()) / static_cast<double>(step - first_done_step_);
      line += " | ETA " + human_duration(per_step * static_cast<double>(steps - step));
    }
    emit(line);
    if (have_times && cfg_.ds.wall_clock_breakdown) {
      emit(fmt::format(
          "step {:>6}/{} | time per step (ms): forward {:.1f} | backward {:.1f} | optimizer "
          "{:.1f} | communication {:.1f}",
          step, steps, 1e3 * times.forward_s / n, 1e3 * times.backward_s / n,
          1e3 * times.optimizer_s / n, 1e3 * times.comm_s / n));
    }
    if (options_.verbose)
      emit(fmt::format("step {:>6}/{} | memory: {}", step, steps, memory_text()));
  }

  nlohmann::ordered_json record = {
      {"step", step}, {"loss", stats.loss}, {"lr", stats.lr}, {"grad_norm", stats.grad_norm}};
  if (cfg_.ds.fp16.enabled) {
    record["loss_scale"] = stats.loss_scale;
    record["skipped"] = stats.skipped;
  }
  record["tokens_per_s"] = tokens_per_s;
  record["samples_per_s"] = samples_per_s;
  record["tflops"] = flops_per_rank / 1e12;
  if (peak_flops_ > 0) record["mfu"] = mfu;
  record["elapsed_s"] = elapsed;
  record["memory_bytes"] = memory_json(host_memory());
  if (uses_device_memory()) record["device_memory_bytes"] = memory_json(device_memory());
  if (have_times) {
    record["time_ms"] = {{"forward", 1e3 * times.forward_s / n},
                         {"backward", 1e3 * times.backward_s / n},
                         {"optimizer", 1e3 * times.optimizer_s / n},
                         {"communication", 1e3 * times.comm_s / n}};
  }
  metrics_.write(record);

  if (!monitors_.empty()) {
    const int64_t samples = step * cfg_.ds.batch.train_batch_size;
    std::vector<MonitorEvent> events = {{"Train/Samples/tokens_per_s", tokens_per_s, samples}};
    if (peak_flops_ > 0) events.push_back({"Train/Samples/mfu", mfu, samples});
    monitor(std::move(events));
  }
}

void Reporter::on_eval(int64_t step, double val_loss) {
  if (prints())
    emit(fmt::format("step {:>6}/{} | val loss {:.4f}", step, cfg_.train.steps, val_loss));
  metrics_.write({{"step", step}, {"val_loss", val_loss}});
  monitor({{"Train/Samples/eval_loss", val_loss, step * cfg_.ds.batch.train_batch_size}});
}

void Reporter::on_memory(const char* when, const zero::MemoryReport& r) {
  if (!options_.quiet) {  // every rank: under ZeRO each holds a different share
    emit(fmt::format(
             "memory {}: rank {}, stage {}: params {:.1f} MiB, grads {:.1f} MiB, optimizer "
             "{:.1f} MiB = model states {:.1f} MiB (ZeRO formula {:.1f} MiB); process {:.1f} MiB{}",
             when, r.rank, r.stage, mib(static_cast<double>(r.params_bytes)),
             mib(static_cast<double>(r.grads_bytes)), mib(static_cast<double>(r.optimizer_bytes)),
             mib(static_cast<double>(r.model_states_bytes())),
             mib(static_cast<double>(r.predicted_model_states_bytes)),
             mib(static_cast<double>(tensor::memory_total() - r.nvme_bytes)),
             r.nvme_bytes > 0
                 ? fmt::format(" + {:.1f} MiB on nvme", mib(static_cast<double>(r.nvme_bytes)))
                 : std::string()),
         /*warn=*/false, /*force=*/true);
    if (options_.verbose) emit(fmt::format("memory {}: {}", when, memory_text()), false, true);
  }
  nlohmann::ordered_json event = {
      {"event", "memory"},
      {"when", when},
      {"rank", r.rank},
      {"stage", r.stage},
      {"params_bytes", r.params_bytes},
      {"grads_bytes", r.grads_bytes},
      {"optimizer_bytes", r.optimizer_bytes},
      {"model_states_bytes", r.model_states_bytes()},
      {"predicted_model_states_bytes", r.predicted_model_states_bytes},
      {"nvme_bytes", r.nvme_bytes},
      // The model's activations: host memory, or the GPU's when it runs there.
      {"activations_bytes", host_memory().bytes(MemoryCategory::kActivations) +
                                device_memory().bytes(MemoryCategory::kActivations)},
      {"total_bytes", tensor::memory_total()},
      {"memory_bytes", memory_json(host_memory())}};
  if (uses_device_memory()) event["device_memory_bytes"] = memory_json(device_memory());
  metrics_.write(event);
}

void Reporter::on_finish(int64_t steps_done) {
  clear_live();
  const double elapsed = seconds_between(start_, Clock::now());
  const int64_t run_steps = std::max<int64_t>(0, steps_done - first_step_);
  const double tokens_per_s =
      static_cast<double>(run_steps * tokens_per_step_) / std::max(train_seconds_, 1e-9);
  const double mfu = peak_flops_ > 0 ? flops_per_token_ * tokens_per_s / world_ / peak_flops_ : 0;
  if (rank_ == 0) {
    std::string line = fmt::format("done: {} steps in {:.1f} s ({:.0f} tok/s while training",
                                   run_steps, elapsed, tokens_per_s);
    if (peak_flops_ > 0) line += fmt::format(", MFU {:.1f}%", 100 * mfu);
    // --quiet still shows how it ended.
    if (options_.stream != nullptr) {
      fmt::print(options_.stream, "{})\n", line);
      std::fflush(options_.stream);
    } else {
      log::write(log::Level::kInfo, line + ")");
    }
  }
}

void Reporter::print_sample(std::string_view text) {
  if (rank_ != 0) return;
  clear_live();
  std::FILE* out = options_.stream != nullptr ? options_.stream : stdout;
  if (options_.stream == nullptr) std::fflush(stderr);
  fmt::print(out, "---- sample ----\n{}\n----------------\n", text);
  std::fflush(out);
}

void Reporter::note(const std::string& line, bool warn) {
  if (warn ? rank_ == 0 : prints()) emit(line, warn);
}

}  // namespace ds::worker
