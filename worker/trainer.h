// The training loop of one process: data, model, optimizer and schedule from a
// resolved TrainConfig; logs, metrics and evaluation as DESIGN.md describes.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/train_config.h"
#include "data/sampler.h"
#include "data/token_dataset.h"
#include "model/gpt.h"
#include "pipeline/executor.h"
#include "tensor/memory.h"
#include "worker/reporter.h"
#include "zero/engine.h"

namespace ds::worker {

struct TrainOptions {
  std::string config;
  std::string metrics;           // overrides log.metrics
  std::string init_weights;      // safetensors to start from
  std::string save_weights;      // safetensors to write at the end (also checkpoint.export)
  std::optional<int64_t> steps;  // overrides train.steps
  bool quiet = false;            // --quiet: warnings, samples and the final line only
  bool verbose = false;          // --verbose: every step, memory by category
  int64_t sample_tokens = 0;     // --sample N: print N generated tokens at the end (rank 0)
};

// The groups one rank trains with (train_command.cpp builds them from the bootstrap).
struct TrainGroups {
  int rank = 0;                        // in the run
  tensor::Device device;               // where this rank computes (device_choice.h)
  std::unique_ptr<zero::DpComm> data;  // this stage's data-parallel group
  // Its NCCL twin for the engine's GPU buffers, when every rank has a GPU of its own; null:
  // those collectives are staged through host memory over `data`.
  std::shared_ptr<comm::ProcessGroup> device_data;
  std::shared_ptr<comm::ProcessGroup> device_pipe;  // the same for `pipe` (activations)
  std::shared_ptr<comm::ProcessGroup> device_tied;  // and for `tied`
  std::shared_ptr<comm::ProcessGroup> pipe;         // this rank's pipeline; nullptr without one
  std::shared_ptr<zero::DpComm> pipe_sums;          // the same pipeline, for the engine's sums
  std::shared_ptr<zero::DpComm> tied;   // first + last stage (tied embeddings), else null
  std::shared_ptr<zero::DpComm> world;  // every rank; null for one process
};

class Trainer {
 public:
  Trainer(config::TrainConfig config, const TrainOptions& options, TrainGroups groups);
  ~Trainer();

  // Trains train.steps steps; throws ds::Error with exit code 128+N on a signal.
  void run();

  // One optimizer step (from 0); public for tests and benchmarks.
  zero::StepStats train_step(int64_t step);
  // Mean loss over train.eval_batches validation batches; nullopt without a val stream.
  std::optional<double> evaluate();

  const model::Gpt& model() const { return *model_; }
  zero::Engine& engine() { return *engine_; }
  int64_t tokens_per_step() const;

 private:
  void report_memory(const char* when);
  void print_sample(const std::vector<float>& weights);
  // Loads checkpoint.resume's tag, if any; returns the step to continue from.
  int64_t resume();
  void save(int64_t completed_steps);
  // The signal every rank agrees to stop on (0: go on); a collective at step boundaries.
  int agreed_interrupt();

  config::TrainConfig cfg_;
  TrainOptions options_;
  data::Datasets data_;
  std::unique_ptr<tensor::Ops> ops_;  // what the model computes on; outlives it
  std::unique_ptr<model::Gpt> model_;
  std::unique_ptr<zero::Engine> engine_;
  std::unique_ptr<pipeline::PipelineExecutor> pipeline_;  // with pipeline.stages > 1
  int rank_ = 0;                                          // in the run
  std::unique_ptr<data::TrainSampler> sampler_;
  std::unique_ptr<data::EvalSampler> eval_sampler_;
  tensor::Buffer inputs_, targets_;
  std::unique_ptr<Reporter> reporter_;
  int64_t micro_ = 0, seq_len_ = 0, accum_ = 0;
  int64_t start_step_ = 0;
};

}  // namespace ds::worker
