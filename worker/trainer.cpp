#include "worker/trainer.h"

#include <cmath>
#include <cstring>

#include "checkpoint/weights_file.h"
#include "model/init.h"
#include "optim/grad_clip.h"
#include "tensor/cpu/kernels.h"
#include "util/log.h"
#include "worker/interrupt.h"

namespace ds::worker {
namespace {

using Clock = std::chrono::steady_clock;
using tensor::Buffer;
using tensor::MemoryCategory;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// What this build cannot train yet: refused by name rather than silently ignored.
void check_supported(const config::TrainConfig& cfg) {
  const auto refuse = [&](const std::string& what, const std::string& hint) {
    throw UsageError(
        fmt::format("{}: {} is not supported by this build's trainer yet", cfg.path.string(), what),
        hint);
  };
  const auto& ds = cfg.ds;
  if (ds.batch.world_size > 1) {
    refuse(fmt::format("a world of {} ranks", ds.batch.world_size),
           "train on one process (no launcher) for now");
  }
  if (ds.fp16.enabled || ds.bf16.enabled) {
    refuse(ds.fp16.enabled ? "fp16 mixed precision" : "bf16 mixed precision",
           "set fp16.enabled and bf16.enabled to false to train in fp32");
  }
  if (cfg.train.device == config::Device::kCuda) refuse("device: cuda", "use device: cpu");
  if (ds.pipeline.activation_checkpoint_interval > 0) {
    refuse("activation checkpointing", "set pipeline.activation_checkpoint_interval to 0");
  }
  if (ds.tensorboard.enabled || ds.csv_monitor.enabled || ds.wandb.enabled) {
    refuse("the tensorboard/csv_monitor/wandb monitors",
           "use log.metrics (JSON lines) and disable the monitor");
  }
}

std::string format_count(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}B", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

}  // namespace

Trainer::Trainer(config::TrainConfig config, const TrainOptions& options)
    : cfg_(std::move(config)), options_(options) {
  check_supported(cfg_);
  if (options_.steps) cfg_.train.steps = *options_.steps;
  micro_ = cfg_.ds.batch.micro_batch_per_gpu;
  accum_ = cfg_.ds.batch.gradient_accumulation_steps;
  seq_len_ = cfg_.data.seq_len;

  // Bad data must stop us before any work: load (and check) it first.
  data_ = data::load_datasets(cfg_.data, cfg_.model.vocab_size, seq_len_);

  model_ = std::make_unique<model::Gpt>(cfg_.model);
  const model::ModelLayout& layout = model_->layout();
  params_ = Buffer(sizeof(float) * layout.total, MemoryCategory::kParameters);
  grads_ = Buffer(sizeof(float) * layout.total, MemoryCategory::kGradients);
  if (!options_.init_weights.empty()) {
    checkpoint::load_weights(options_.init_weights, layout, cfg_.model.tie_embeddings,
                             params_.as<float>());
  } else {
    model::init_weights(layout, cfg_.model, cfg_.train.seed, params_.as<float>());
  }

  optimizer_ = optim::make_optimizer(cfg_.ds.optimizer, layout.total);
  schedule_ =
      std::make_unique<optim::LrSchedule>(cfg_.ds.scheduler, cfg_.ds.optimizer.lr,
                                          cfg_.ds.optimizer.type != config::OptimizerType::kSgd);

  data::SamplerOptions so;
  so.seq_len = seq_len_;
  so.micro_batch = micro_;
  so.grad_accum_steps = accum_;
  so.dp_size = cfg_.ds.batch.dp_size;
  so.shuffle = cfg_.data.shuffle;
  so.seed = cfg_.train.seed;
  sampler_ = std::make_unique<data::TrainSampler>(data_.train.tokens, so);
  if (!data_.val.tokens.empty()) {
    eval_sampler_ = std::make_unique<data::EvalSampler>(data_.val.tokens, seq_len_, micro_);
  }
  inputs_ = Buffer(sizeof(int32_t) * micro_ * seq_len_, MemoryCategory::kActivations);
  targets_ = Buffer(sizeof(int32_t) * micro_ * seq_len_, MemoryCategory::kActivations);
  model_->reserve(static_cast<int>(micro_), static_cast<int>(seq_len_));

  const std::string metrics = options_.metrics.empty() ? cfg_.log.metrics : options_.metrics;
  if (!metrics.empty()) metrics_ = MetricsWriter(metrics, 0);
}

int64_t Trainer::tokens_per_step() const { return cfg_.ds.batch.train_batch_size * seq_len_; }

void Trainer::log_start() const {
  const auto& m = cfg_.model;
  log::info("model {}: {} layers, {} heads, {} wide, vocab {}, {} parameters",
            m.preset.empty() ? m.arch : m.preset, m.n_layer, m.n_head, m.n_embd, m.vocab_size,
            format_count(static_cast<double>(model_->layout().parameter_count())));
  log::info("data: {} train tokens from {}{}", format_count(data_.train.size()), data_.train.source,
            data_.val.tokens.empty()
                ? std::string(", no validation")
                : fmt::format(", {} validation tokens{}", format_count(data_.val.size()),
                              data_.val_split_from_train ? " (held out from train)" : ""));
  log::info(
      "batch: {} sequences of {} tokens per step ({} micro x {} accumulation), {} steps, "
      "{} {}",
      cfg_.ds.batch.train_batch_size, seq_len_, micro_, accum_, cfg_.train.steps,
      cfg_.ds.optimizer.type_name, schedule_->name().empty() ? "constant lr" : schedule_->name());
}

void Trainer::stop_if_interrupted(int64_t completed_steps) const {
  if (const int signal = interrupt_signal()) {
    throw Error(fmt::format("interrupted by signal {} after {} of {} steps", signal,
                            completed_steps, cfg_.train.steps),
                "", static_cast<ExitCode>(128 + signal));
  }
}

StepResult Trainer::train_step(int64_t step) {
  const int64_t total = model_->layout().total;
  float* params = params_.as<float>();
  float* grads = grads_.as<float>();
  std::memset(grads, 0, sizeof(float) * total);
  const int B = static_cast<int>(micro_), T = static_cast<int>(seq_len_);
  model::MicroBatch mb{inputs_.as<int32_t>(), targets_.as<int32_t>(), B, T,
                       1.0f / static_cast<float>(int64_t{B} * T * accum_)};
  double loss_sum = 0;
  for (int64_t m = 0; m < accum_; ++m) {
    sampler_->fill_micro_batch(step, static_cast<int>(m), 0, inputs_.as<int32_t>(),
                               targets_.as<int32_t>());
    loss_sum += model_->forward(params, mb);
    model_->backward(params, grads, mb);
    stop_if_interrupted(step);
  }

  StepResult r;
  r.loss = loss_sum / static_cast<double>(accum_);
  r.grad_norm = std::sqrt(tensor::cpu::sum_of_squares(grads, total));
  if (!std::isfinite(r.grad_norm)) {
    throw Error(
        fmt::format("step {}: the gradient norm is {} (loss {})", step + 1, r.grad_norm, r.loss),
        "lower the learning rate or enable gradient_clipping");
  }
  const double coefficient = optim::clip_coefficient(r.grad_norm, cfg_.ds.gradient_clipping);
  if (coefficient < 1.0) tensor::cpu::scale_inplace(grads, static_cast<float>(coefficient), total);

  const int64_t applied = step + 1;
  r.lr = schedule_->lr_at(applied);
  if (auto* adam = dynamic_cast<optim::Adam*>(optimizer_.get());
      adam && schedule_->cycles_momentum()) {
    adam->set_betas(schedule_->beta1_at(applied).value_or(adam->options().beta1),
                    schedule_->beta2_override().value_or(adam->options().beta2));
  }
  optimizer_->step(params, grads, total, r.lr, applied);
  return r;
}

std::optional<double> Trainer::evaluate() {
  if (!eval_sampler_) return std::nullopt;
  const int B = static_cast<int>(micro_), T = static_cast<int>(seq_len_);
  model::MicroBatch mb{inputs_.as<int32_t>(), targets_.as<int32_t>(), B, T, 0.0f};
  double sum = 0;
  for (int64_t b = 0; b < cfg_.train.eval_batches; ++b) {
    eval_sampler_->fill_batch(b, inputs_.as<int32_t>(), targets_.as<int32_t>());
    sum += model_->forward(params_.as<float>(), mb);
  }
  return sum / static_cast<double>(cfg_.train.eval_batches);
}

void Trainer::run() {
  log_start();
  const int64_t steps = cfg_.train.steps;
  const int64_t every = cfg_.ds.steps_per_print;
  const auto start = Clock::now();
  auto window_start = start;
  int64_t window_steps = 0;
  for (int64_t step = 0; step < steps; ++step) {
    const StepResult r = train_step(step);
    ++window_steps;
    const int64_t done = step + 1;
    if (done % every == 0 || done == 1 || done == steps) {
      const double window = seconds_since(window_start);
      const double tokens_per_s =
          static_cast<double>(window_steps * tokens_per_step()) / std::max(window, 1e-9);
      const double elapsed = seconds_since(start);
      log::info(
          "step {:>6}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.4f} | {:.0f} tok/s | "
          "{:.1f} s",
          done, steps, r.loss, r.lr, r.grad_norm, tokens_per_s, elapsed);
      metrics_.write({{"step", done},
                      {"loss", r.loss},
                      {"lr", r.lr},
                      {"grad_norm", r.grad_norm},
                      {"tokens_per_s", tokens_per_s},
                      {"elapsed_s", elapsed}});
      window_start = Clock::now();
      window_steps = 0;
    }
    const int64_t eval_every = cfg_.train.eval_every;
    if (eval_every > 0 && (done % eval_every == 0 || done == steps)) {
      if (auto val = evaluate()) {
        log::info("step {:>6}/{} | val loss {:.4f}", done, steps, *val);
        metrics_.write({{"step", done}, {"val_loss", *val}});
      }
    }
    stop_if_interrupted(done);
  }
  const double elapsed = seconds_since(start);
  log::info("done: {} steps in {:.1f} s ({:.0f} tok/s)", steps, elapsed,
            static_cast<double>(steps * tokens_per_step()) / std::max(elapsed, 1e-9));

  std::vector<std::string> outputs;
  if (!options_.save_weights.empty()) outputs.push_back(options_.save_weights);
  if (!cfg_.checkpoint.export_path.empty()) outputs.push_back(cfg_.checkpoint.export_path);
  for (const std::string& path : outputs) {
    checkpoint::save_weights(path, model_->layout(), params_.as<float>());
    log::info("wrote the weights to {}", path);
  }
}

}  // namespace ds::worker
