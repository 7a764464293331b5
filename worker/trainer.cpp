#include "worker/trainer.h"

#include <cmath>
#include <csignal>
#include <cstring>

#include "checkpoint/checkpoint.h"
#include "checkpoint/hf_model.h"
#include "checkpoint/weights_file.h"
#include "model/init.h"
#include "tensor/cpu/kernels.h"
#include "util/log.h"
#include "worker/interrupt.h"
#include "worker/sample_command.h"
#include "zero/nccl_device_comm.h"

namespace ds::worker {
namespace {

// How a GPU's matmuls round their fp32 inputs (tensor/ops.h): a bf16 run's on bf16 tensor
// cores, as PyTorch's bf16 autocast computes; an fp16 run's in TF32, which keeps fp32's range
// where fp16 inputs could overflow (its 16-bit states are DeepSpeed's; its compute is fp32);
// an fp32 run in full fp32. The CPU ignores it.
tensor::MatmulPrecision matmul_precision(const config::DsConfig& ds) {
  if (ds.bf16.enabled) return tensor::MatmulPrecision::kBf16;
  if (ds.fp16.enabled) return tensor::MatmulPrecision::kTf32;
  return tensor::MatmulPrecision::kFp32;
}

using Clock = std::chrono::steady_clock;
using tensor::Buffer;
using tensor::MemoryCategory;

static_assert(data::kIgnoreTarget == tensor::cpu::kIgnoreTarget,
              "the data loader and the loss must agree on the ignored target");

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
  if (ds.wandb.enabled) {
    refuse("the wandb monitor (it needs the network)",
           "set wandb.enabled to false; tensorboard and csv_monitor work offline");
  }
}

}  // namespace

Trainer::Trainer(config::TrainConfig config, const TrainOptions& options, TrainGroups groups)
    : cfg_(std::move(config)), options_(options), rank_(groups.rank) {
  check_supported(cfg_);
  if (options_.steps) cfg_.train.steps = *options_.steps;
  micro_ = cfg_.ds.batch.micro_batch_per_gpu;
  accum_ = cfg_.ds.batch.gradient_accumulation_steps;
  seq_len_ = cfg_.data.seq_len;

  // Bad data must stop us before any work: load (and check) it first.
  data_ = data::load_datasets(cfg_.data, cfg_.model.vocab_size, seq_len_);

  ops_ = tensor::make_ops(groups.device, matmul_precision(cfg_.ds));
  model_ = std::make_unique<model::Gpt>(cfg_.model, *ops_);
  model_->set_activation_checkpoint_interval(
      static_cast<int>(cfg_.ds.pipeline.activation_checkpoint_interval));
  const model::ModelLayout& layout = model_->layout();
  // A pipeline stage holds its range of the layer list (and, on the last stage, a copy
  // of the embedding for the tied head).
  zero::StageContext stage;
  std::optional<pipeline::StagePartition> parts;
  if (groups.pipe) {
    parts = pipeline::partition_layers(layout, cfg_.ds.pipeline);
    const int s = groups.pipe->rank(), stages = parts->num_stages();
    stage.first_layer = parts->first_layer(s);
    stage.last_layer = parts->last_layer(s);
    stage.tied_copy = cfg_.model.tie_embeddings && s == stages - 1 && stage.first_layer > 0;
    stage.activation_slots = pipeline::train_num_pipe_buffers(static_cast<int>(accum_), stages, s);
    stage.pipe = groups.pipe_sums;
    stage.tied = groups.tied;
  }
  stage.world = groups.world;
  if (groups.device_data) {
    stage.device_data = zero::make_nccl_device_comm(std::move(groups.device_data), *ops_);
  }
  if (groups.device_tied) {
    stage.device_tied = zero::make_nccl_device_comm(std::move(groups.device_tied), *ops_);
  }
  if (groups.device_pipe) zero::follow_compute_stream(*groups.device_pipe, *ops_);
  {
    // The weights every rank starts from. Files are read by range, so a ZeRO-3 rank reads
    // only its own pieces; random initialisation makes the whole model (one random stream
    // fixes every value, whatever the layout).
    std::vector<std::filesystem::path> files;
    if (!options_.init_weights.empty()) {
      files = {options_.init_weights};
    } else if (!cfg_.model.hf_dir.empty()) {
      files = checkpoint::hf_weight_files(cfg_.model.hf_dir);
    }
    if (!files.empty()) {
      const checkpoint::WeightReader reader(files, layout, cfg_.model.tie_embeddings);
      engine_ = std::make_unique<zero::Engine>(
          cfg_, *model_,
          [&reader](int64_t offset, int64_t count, float* dst) { reader.read(offset, count, dst); },
          std::move(groups.data), stage);
    } else {
      std::vector<float> initial(static_cast<size_t>(layout.total));
      model::init_weights(layout, cfg_.model, cfg_.train.seed, initial.data());
      engine_ = std::make_unique<zero::Engine>(cfg_, *model_, initial.data(),
                                               std::move(groups.data), stage);
    }
  }
  if (groups.pipe) {
    pipeline_ = std::make_unique<pipeline::PipelineExecutor>(cfg_, *model_, *engine_, *parts,
                                                             groups.pipe, groups.pipe_sums,
                                                             std::move(groups.device_pipe));
  }

  data::SamplerOptions so;
  so.seq_len = seq_len_;
  so.micro_batch = micro_;
  so.grad_accum_steps = accum_;
  so.dp_size = cfg_.ds.batch.dp_size;
  so.shuffle = cfg_.data.shuffle;
  so.seed = cfg_.train.seed;
  sampler_ = std::make_unique<data::TrainSampler>(data_.train.view(), so);
  if (!data_.val.tokens.empty()) {
    eval_sampler_ = std::make_unique<data::EvalSampler>(data_.val.view(), seq_len_, micro_);
  }
  inputs_ = Buffer(sizeof(int32_t) * micro_ * seq_len_, MemoryCategory::kActivations);
  targets_ = Buffer(sizeof(int32_t) * micro_ * seq_len_, MemoryCategory::kActivations);

  start_step_ = resume();
  ReportOptions report;
  report.metrics_path = options_.metrics.empty() ? cfg_.log.metrics : options_.metrics;
  report.append_metrics = start_step_ > 0;
  report.quiet = options_.quiet;
  report.verbose = options_.verbose;
  reporter_ =
      std::make_unique<Reporter>(cfg_, report, rank_, static_cast<int>(cfg_.ds.batch.world_size));
}

Trainer::~Trainer() = default;

int64_t Trainer::resume() {
  const auto& ck = cfg_.checkpoint;
  const auto tag = checkpoint::resume_tag(ck.dir, ck.resume);
  if (!tag) return 0;
  const checkpoint::LoadedCheckpoint loaded =
      checkpoint::load_checkpoint(ck.dir, *tag, model_->layout(), engine_->optimizer_state_names());
  engine_->load_state(loaded.state, loaded.progress.applied_steps, loaded.progress.scaler);
  const auto& layout = loaded.meta.at("layout");
  log::info("resumed from {}/{} at step {} (saved on {} ranks, ZeRO stage {}, {})", ck.dir, *tag,
            loaded.progress.step, layout.value("world_size", 0), layout.value("zero_stage", 0),
            layout.value("dtype", "?"));
  if (!options_.init_weights.empty()) {
    log::warn("--init-weights {} is ignored: the run resumes from its checkpoint",
              options_.init_weights);
  }
  const int64_t saved_batch = layout.value("train_batch_size", int64_t{0});
  if (saved_batch != cfg_.ds.batch.train_batch_size) {
    log::warn(
        "train_batch_size was {} when the checkpoint was saved and is {} now: the data "
        "position moves with it (step {} starts at sample {})",
        saved_batch, cfg_.ds.batch.train_batch_size, loaded.progress.step,
        loaded.progress.step * cfg_.ds.batch.train_batch_size);
  }
  return loaded.progress.step;
}

void Trainer::save(int64_t completed_steps) {
  checkpoint::TrainProgress progress;
  progress.step = completed_steps;
  progress.applied_steps = engine_->applied_steps();
  progress.samples = completed_steps * cfg_.ds.batch.train_batch_size;
  progress.scaler = engine_->loss_scaler().state();
  const std::string tag = checkpoint::tag_for_step(completed_steps);
  const auto start = Clock::now();
  checkpoint::save_checkpoint(cfg_.checkpoint.dir, tag, cfg_, *engine_, progress,
                              cfg_.checkpoint.keep);
  reporter_->note(fmt::format("saved checkpoint {}/{} in {:.1f} s", cfg_.checkpoint.dir, tag,
                              seconds_since(start)));
}

int Trainer::agreed_interrupt() {
  // Every rank must stop at the same step, or the others would wait in a collective.
  const bool mine = interrupt_signal() != 0;
  const bool any = engine_->world_comm().allreduce_any(mine);
  if (!any) return 0;
  return mine ? interrupt_signal() : SIGTERM;
}

int64_t Trainer::tokens_per_step() const { return cfg_.ds.batch.train_batch_size * seq_len_; }

zero::StepStats Trainer::train_step(int64_t step) {
  // The data-parallel index picks the samples; every stage of a pipeline sees the same.
  const int dp_rank = engine_->comm().rank();
  const zero::BatchFiller fill = [&](int micro, int32_t* inputs, int32_t* targets) {
    sampler_->fill_micro_batch(step, micro, dp_rank, inputs, targets);
  };
  return pipeline_ ? pipeline_->train_step(fill) : engine_->train_step(fill);
}

void Trainer::report_memory(const char* when) {
  reporter_->on_memory(when, engine_->memory_report());
}

void Trainer::print_sample(const std::vector<float>& weights) {
  // The data's tokenizer (data.tokenizer, or the model folder's), else bytes.
  const bool bytes = cfg_.data.tokenizer.empty();
  if (bytes && cfg_.model.vocab_size > 256) {
    reporter_->note(
        "no sample: the model's tokens are not bytes (use dsworker sample --tokenizer)");
    return;
  }
  GenerateOptions generate;
  generate.tokens = options_.sample_tokens;
  generate.seed = cfg_.train.seed;
  const Tokenizer tokenizer = bytes ? Tokenizer::bytes() : Tokenizer::load(cfg_.data.tokenizer);
  // `weights` are host memory: a model on a GPU cannot read them, a CPU copy of it can.
  std::optional<model::Gpt> on_host;
  if (!model_->ops().device().is_cpu()) on_host.emplace(cfg_.model);
  model::Gpt& model = on_host ? *on_host : *model_;
  reporter_->print_sample(generate_text(model, weights.data(), tokenizer, "", generate));
}

std::optional<double> Trainer::evaluate() {
  if (!eval_sampler_) return std::nullopt;
  // Rank r evaluates batches r, r + DP, ...; the mean is over all eval_batches. Every rank runs
  // the same number of forwards, since a forward can be collective (ZeRO-3 gathers each layer's
  // parameters): where eval_batches is not a multiple of DP, the ranks past the end run one on
  // a batch already counted and add nothing.
  zero::DpComm& comm = engine_->comm();
  const int64_t batches = cfg_.train.eval_batches;
  const int64_t rounds = (batches + comm.size() - 1) / comm.size();
  double sum = 0;
  for (int64_t round = 0; round < rounds; ++round) {
    const int64_t b = round * comm.size() + comm.rank();
    eval_sampler_->fill_batch(b % batches, inputs_.as<int32_t>(), targets_.as<int32_t>());
    const double loss = pipeline_
                            ? pipeline_->eval_loss(inputs_.as<int32_t>(), targets_.as<int32_t>())
                            : engine_->eval_loss(inputs_.as<int32_t>(), targets_.as<int32_t>());
    if (b < batches) sum += loss;
  }
  return comm.allreduce_sum(sum) / static_cast<double>(batches);
}

void Trainer::run() {
  RunInfo info;
  info.parameters = model_->layout().parameter_count();
  info.data_source = data_.train.source;
  info.train_tokens = data_.train.size();
  info.val_tokens = data_.val.size();
  info.val_from_train = data_.val_split_from_train;
  info.first_step = start_step_;
  info.device_name = ops_->device_name();
  reporter_->on_start(info, engine_->memory_report());
  const int64_t steps = cfg_.train.steps;
  int64_t last_saved = start_step_;
  for (int64_t step = start_step_; step < steps; ++step) {
    const auto step_start = Clock::now();
    const zero::StepStats r = train_step(step);
    const int64_t done = step + 1;
    const StepTimes times{r.forward_s, r.backward_s, r.optimizer_s, r.comm_s};
    reporter_->on_step(done, r, seconds_since(step_start),
                       cfg_.ds.wall_clock_breakdown ? &times : nullptr);
    if (done == 1) report_memory("after the first step");
    const int64_t eval_every = cfg_.train.eval_every;
    if (eval_every > 0 && (done % eval_every == 0 || done == steps)) {
      if (auto val = evaluate()) reporter_->on_eval(done, *val);
    }
    const auto& ck = cfg_.checkpoint;
    if (ck.save_every > 0 && done % ck.save_every == 0 && done < steps) {
      save(done);
      last_saved = done;
    }
    if (const int signal = agreed_interrupt()) {
      if (ck.save_on_signal && last_saved != done) save(done);
      throw Error(fmt::format("interrupted by signal {} after {} of {} steps", signal, done, steps),
                  ck.save_on_signal ? "the run resumes from its checkpoint when started again" : "",
                  static_cast<ExitCode>(128 + signal));
    }
  }
  if (!cfg_.checkpoint.dir.empty() && last_saved != steps) save(steps);
  reporter_->on_finish(steps);
  if (const std::string report = ops_->kernel_report(); !report.empty()) log::info("{}", report);

  std::vector<std::string> outputs;
  if (!options_.save_weights.empty()) outputs.push_back(options_.save_weights);
  if (!cfg_.checkpoint.export_path.empty()) outputs.push_back(cfg_.checkpoint.export_path);
  if (outputs.empty() && options_.sample_tokens == 0) return;
  const std::vector<float> weights = engine_->full_parameters();  // collective
  if (rank_ != 0) return;
  for (const std::string& path : outputs) {
    checkpoint::save_weights(path, model_->layout(), weights.data());
    reporter_->note(fmt::format("wrote the weights to {}", path));
  }
  if (options_.sample_tokens > 0) print_sample(weights);
}

}  // namespace ds::worker
