// Runs DeepSpeed's 1F1B TrainSchedule (schedule.h) on one pipeline stage: the stage's
// layer range of the model, driven through the ZeRO engine of its data-parallel group,
// with activations sent up and their gradients sent down the pipeline group.
//
// Each pipe buffer is an activation slot of the model (Gpt::forward_range), so the
// micro-batches in flight keep their activations apart. ReduceTiedGrads and
// ReduceGrads happen in the engine's finish_step at OptimizerStep: the tied sum after the
// data-parallel mean, which is the same sum because both are linear.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "comm/process_group.h"
#include "config/train_config.h"
#include "model/gpt.h"
#include "pipeline/partition.h"
#include "pipeline/schedule.h"
#include "tensor/memory.h"
#include "zero/engine.h"

namespace ds::pipeline {

class PipelineExecutor {
 public:
  // `pipe`: this rank's pipeline group, whose rank is the stage; `pipe_sums` the same
  // group for the engine's sums.
  PipelineExecutor(const config::TrainConfig& cfg, model::Gpt& model, zero::Engine& engine,
                   const StagePartition& partition, std::shared_ptr<comm::ProcessGroup> pipe,
                   std::shared_ptr<zero::DpComm> pipe_sums,
                   std::shared_ptr<comm::ProcessGroup> device_pipe = nullptr);

  // One optimizer step over gradient_accumulation_steps micro-batches. `fill` is called on
  // the first stage (inputs) and the last (targets) for micro-batches 0..M-1.
  zero::StepStats train_step(const zero::BatchFiller& fill);
  // The mean loss of one micro-batch through the whole pipeline; every stage returns it.
  double eval_loss(const int32_t* inputs, const int32_t* targets);

  int stage() const { return stage_; }
  int num_pipe_buffers() const { return buffers_; }

 private:
  // Runs one instruction; OptimizerStep returns the step's statistics.
  std::optional<zero::StepStats> run(const Instruction& ins, const zero::BatchFiller& fill);
  model::MicroBatch micro_batch(int buffer, float dloss);
  // The dloss of the micro-batch in `buffer`: the same for its forward and its backward.
  float dloss(int buffer) const;
  void send(const float* data, int to);
  void receive(float* data, int from);

  model::Gpt& model_;
  zero::Engine& engine_;
  std::shared_ptr<comm::ProcessGroup> pipe_;
  std::shared_ptr<zero::DpComm> pipe_sums_;
  int stage_, stages_, first_, last_;  // this stage's layers [first_, last_)
  int micro_batches_, buffers_;
  int B_, T_;
  int64_t hidden_;  // floats in one activation [B, T, C]
  std::vector<Step> schedule_;
  std::vector<tensor::Buffer> inputs_, targets_;  // per buffer (first and last stage)
  std::vector<tensor::Buffer> act_in_;            // received activations (not the first stage)
  std::vector<tensor::Buffer> grad_in_;           // received gradients (not the last stage)
  std::vector<tensor::Buffer> grad_out_;          // gradients to send (not the first stage)
  std::vector<const float*> act_out_;             // the model's outputs, per buffer
  // Activations on a GPU travel over `device_pipe` (the pipeline's NCCL twin, following the
  // compute stream) when there is one, else through wire_, host staging for `pipe`.
  std::shared_ptr<comm::ProcessGroup> device_pipe_;
  tensor::Buffer wire_;
  double loss_sum_ = 0;
  double forward_s_ = 0, backward_s_ = 0, p2p_s_ = 0;
};

}  // namespace ds::pipeline
