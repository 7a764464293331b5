#include "pipeline/executor.h"

#include <cstring>
#include <optional>

#include "util/error.h"
#include "zero/step_timer.h"

namespace ds::pipeline {

using tensor::Buffer;
using tensor::MemoryCategory;
using zero::Clock;
using zero::ScopedTimer;
using zero::seconds_since;

namespace {

std::vector<Buffer> buffers_of(int count, size_t bytes, tensor::Device device) {
  std::vector<Buffer> out;
  for (int i = 0; i < count; ++i) out.emplace_back(bytes, MemoryCategory::kActivations, device);
  return out;
}

}  // namespace

PipelineExecutor::PipelineExecutor(const config::TrainConfig& cfg, model::Gpt& model,
                                   zero::Engine& engine, const StagePartition& partition,
                                   std::shared_ptr<comm::ProcessGroup> pipe,
                                   std::shared_ptr<zero::DpComm> pipe_sums,
                                   std::shared_ptr<comm::ProcessGroup> device_pipe)
    : model_(model),
      engine_(engine),
      pipe_(std::move(pipe)),
      pipe_sums_(std::move(pipe_sums)),
      stage_(pipe_->rank()),
      stages_(partition.num_stages()),
      first_(partition.first_layer(stage_)),
      last_(partition.last_layer(stage_) + 1),
      micro_batches_(static_cast<int>(cfg.ds.batch.gradient_accumulation_steps)),
      buffers_(train_num_pipe_buffers(micro_batches_, stages_, stage_)),
      B_(static_cast<int>(cfg.ds.batch.micro_batch_per_gpu)),
      T_(static_cast<int>(cfg.data.seq_len)),
      hidden_(int64_t{B_} * T_ * cfg.model.n_embd),
      schedule_(train_schedule(micro_batches_, stages_, stage_)),
      device_pipe_(std::move(device_pipe)) {
  const size_t tokens = sizeof(int32_t) * static_cast<size_t>(B_) * T_;
  const size_t hidden = sizeof(float) * static_cast<size_t>(hidden_);
  // Micro-batches stay in host memory (the model copies them to its device); activations and
  // their gradients live where the model runs, and travel over NCCL or through host memory.
  const tensor::Device device = model_.ops().device();
  inputs_ = buffers_of(buffers_, tokens, tensor::Device::cpu());
  targets_ = buffers_of(buffers_, tokens, tensor::Device::cpu());
  if (stage_ > 0) {
    act_in_ = buffers_of(buffers_, hidden, device);
    grad_out_ = buffers_of(buffers_, hidden, device);
  }
  if (stage_ < stages_ - 1) grad_in_ = buffers_of(buffers_, hidden, device);
  act_out_.assign(buffers_, nullptr);
  if (!device.is_cpu() && !device_pipe_)
    wire_ = model_.ops().allocate_staging(hidden, MemoryCategory::kCommunication);
}

float PipelineExecutor::dloss(int buffer) const {
  // Only the last stage's head reads dloss (and only it loaded the targets).
  if (stage_ != stages_ - 1) return 0.0f;
  return engine_.micro_batch_dloss(targets_[buffer].as<int32_t>());
}

model::MicroBatch PipelineExecutor::micro_batch(int buffer, float dloss) {
  return {inputs_[buffer].as<int32_t>(), targets_[buffer].as<int32_t>(), B_, T_, dloss};
}

void PipelineExecutor::send(const float* data, int to) {
  ScopedTimer timer(p2p_s_);
  if (device_pipe_) {
    const tensor::Tensor t = tensor::Tensor::wrap(const_cast<float*>(data), {hidden_},
                                                  tensor::DType::kF32, model_.ops().device());
    device_pipe_->send(t, to);
    return;
  }
  const size_t bytes = sizeof(float) * static_cast<size_t>(hidden_);
  if (!wire_.empty()) {
    model_.ops().download(wire_.data(), data, bytes);
    data = wire_.as<float>();
  }
  const tensor::Tensor t =
      tensor::Tensor::wrap(const_cast<float*>(data), {hidden_}, tensor::DType::kF32);
  pipe_->send(t, to);
}

void PipelineExecutor::receive(float* data, int from) {
  ScopedTimer timer(p2p_s_);
  if (device_pipe_) {
    tensor::Tensor t =
        tensor::Tensor::wrap(data, {hidden_}, tensor::DType::kF32, model_.ops().device());
    device_pipe_->recv(t, from);
    return;
  }
  float* host = wire_.empty() ? data : wire_.as<float>();
  tensor::Tensor t = tensor::Tensor::wrap(host, {hidden_}, tensor::DType::kF32);
  pipe_->recv(t, from);
  if (!wire_.empty()) {
    model_.ops().upload(data, host, sizeof(float) * static_cast<size_t>(hidden_));
  }
}

zero::StepStats PipelineExecutor::train_step(const zero::BatchFiller& fill) {
  engine_.begin_step();
  loss_sum_ = 0;
  forward_s_ = backward_s_ = p2p_s_ = 0;
  std::optional<zero::StepStats> stats;
  for (const Step& step : schedule_) {
    for (const Instruction& ins : step) {
      if (auto done = run(ins, fill)) stats = done;
    }
  }
  DS_CHECK(stats.has_value(), "the schedule of stage {} has no OptimizerStep", stage_);
  return *stats;
}

std::optional<zero::StepStats> PipelineExecutor::run(const Instruction& ins,
                                                     const zero::BatchFiller& fill) {
  const int b = ins.buffer_id;
  const bool first = stage_ == 0, last = stage_ == stages_ - 1;
  switch (ins.kind) {
    case InstructionKind::kLoadMicroBatch:
      if (first || last) fill(ins.micro_batch, inputs_[b].as<int32_t>(), targets_[b].as<int32_t>());
      break;
    case InstructionKind::kForwardPass: {
      const auto start = Clock::now();
      engine_.begin_forward();
      const float* x = first ? nullptr : act_in_[b].as<float>();
      act_out_[b] = model_.forward_range(first_, last_, micro_batch(b, dloss(b)), x,
                                         engine_.layer_buffers(), b);
      if (last) loss_sum_ += model_.loss(b);
      forward_s_ += seconds_since(start);
      break;
    }
    case InstructionKind::kBackwardPass: {
      const auto start = Clock::now();
      engine_.begin_backward();
      const float* x = first ? nullptr : act_in_[b].as<float>();
      const float* dy = last ? nullptr : grad_in_[b].as<float>();
      const float* dx = model_.backward_range(first_, last_, micro_batch(b, dloss(b)), x, dy,
                                              engine_.layer_buffers(), b);
      engine_.end_backward();
      // The model reuses its gradient buffers in the next backward; SendGrad comes later.
      if (!first) model_.ops().copy(grad_out_[b].data(), dx, sizeof(float) * hidden_);
      model_.ops().sync();  // on a GPU: the backward's kernels, not only their queuing
      backward_s_ += seconds_since(start);
      break;
    }
    case InstructionKind::kSendActivation:
      send(act_out_[b], stage_ + 1);
      break;
    case InstructionKind::kRecvActivation:
      receive(act_in_[b].as<float>(), stage_ - 1);
      break;
    case InstructionKind::kSendGrad:
      send(grad_out_[b].as<float>(), stage_ - 1);
      break;
    case InstructionKind::kRecvGrad:
      receive(grad_in_[b].as<float>(), stage_ + 1);
      break;
    case InstructionKind::kReduceTiedGrads:
    case InstructionKind::kReduceGrads:
      break;  // in finish_step (see the header)
    case InstructionKind::kOptimizerStep:
      engine_.add_times(forward_s_, backward_s_, p2p_s_);
      return engine_.finish_step(loss_sum_);
  }
  return std::nullopt;
}

double PipelineExecutor::eval_loss(const int32_t* inputs, const int32_t* targets) {
  // Stage by stage in slot 0 (free between steps): no gradients, no schedule needed.
  const bool first = stage_ == 0, last = stage_ == stages_ - 1;
  const size_t tokens = sizeof(int32_t) * static_cast<size_t>(B_) * T_;
  std::memcpy(inputs_[0].data(), inputs, tokens);
  std::memcpy(targets_[0].data(), targets, tokens);
  if (!first) receive(act_in_[0].as<float>(), stage_ - 1);
  engine_.begin_forward();
  const float* out =
      model_.forward_range(first_, last_, micro_batch(0, 0.0f),
                           first ? nullptr : act_in_[0].as<float>(), engine_.layer_buffers(), 0);
  if (!last) send(out, stage_ + 1);
  return pipe_sums_->allreduce_sum(last ? model_.loss(0) : 0.0);
}

}  // namespace ds::pipeline
