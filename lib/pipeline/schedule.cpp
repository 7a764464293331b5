#include "pipeline/schedule.h"

#include <fmt/format.h>

#include <algorithm>

#include "util/error.h"

namespace ds::pipeline {
namespace {

using K = InstructionKind;

bool is_even(int x) { return x % 2 == 0; }

void check_shape(int micro_batches, int stages, int stage_id) {
  DS_CHECK(micro_batches >= 1 && stages >= 1 && stage_id >= 0 && stage_id < stages,
           "a schedule for stage {} of {} over {} micro-batches", stage_id, stages, micro_batches);
}

// Which micro-batch a train step works on, and whether forward or backward: DeepSpeed's
// _step_to_micro_batch. A stage forwards on steps of its own parity; stage s starts s steps
// late and its backwards trail the last stage's by (stages - 1 - s) steps.
struct StepWork {
  int micro_batch;
  bool forward;
};

StepWork step_to_micro_batch(int step, int stages, int stage) {
  if (is_even(step) && is_even(stage)) return {step / 2 - stage / 2, true};
  if (!is_even(step) && !is_even(stage)) return {(step - 1) / 2 - stage / 2, true};
  if (is_even(step)) return {step / 2 - stages + (stage + 1) / 2, false};  // odd stage
  return {(step - 1) / 2 - stages + 1 + stage / 2, false};                 // even stage
}

}  // namespace

std::string_view kind_name(InstructionKind kind) {
  switch (kind) {
    case K::kLoadMicroBatch:
      return "LoadMicroBatch";
    case K::kForwardPass:
      return "ForwardPass";
    case K::kBackwardPass:
      return "BackwardPass";
    case K::kSendActivation:
      return "SendActivation";
    case K::kRecvActivation:
      return "RecvActivation";
    case K::kSendGrad:
      return "SendGrad";
    case K::kRecvGrad:
      return "RecvGrad";
    case K::kReduceTiedGrads:
      return "ReduceTiedGrads";
    case K::kReduceGrads:
      return "ReduceGrads";
    case K::kOptimizerStep:
      return "OptimizerStep";
  }
  return "Unknown";
}

bool has_buffer(InstructionKind kind) {
  return kind != K::kReduceTiedGrads && kind != K::kReduceGrads && kind != K::kOptimizerStep;
}

std::string to_string(const Instruction& instruction) {
  if (!has_buffer(instruction.kind)) return fmt::format("{}()", kind_name(instruction.kind));
  return fmt::format("{}(buffer_id={})", kind_name(instruction.kind), instruction.buffer_id);
}

std::string to_string_with_micro_batch(const Instruction& instruction) {
  if (!has_buffer(instruction.kind)) return to_string(instruction);
  return fmt::format("{}(buffer_id={}, micro_batch={})", kind_name(instruction.kind),
                     instruction.buffer_id, instruction.micro_batch);
}

int train_num_pipe_buffers(int micro_batches, int stages, int stage_id) {
  check_shape(micro_batches, stages, stage_id);
  // As many as the micro-batches this stage forwards before its first backward.
  return std::max(2, std::min(stages - stage_id, micro_batches));
}

std::vector<Step> train_schedule(int micro_batches, int stages, int stage_id) {
  const int buffers = train_num_pipe_buffers(micro_batches, stages, stage_id);
  const auto valid = [micro_batches](int mb) { return mb >= 0 && mb < micro_batches; };
  const auto op = [buffers](K kind, int mb) { return Instruction{kind, mb % buffers, mb}; };
  const bool has_prev = stage_id > 0;
  const bool has_next = stage_id < stages - 1;
  const bool loads = !has_prev || !has_next;

  const int total_steps = 2 * (micro_batches + stages - 1);
  std::vector<Step> steps(static_cast<size_t>(total_steps));
  int prev_mb = -1;  // the micro-batch of the previous step, whose result goes out now
  for (int step_id = 0; step_id < total_steps; ++step_id) {
    const auto [mb, forward] = step_to_micro_batch(step_id, stages, stage_id);
    Step& cmds = steps[static_cast<size_t>(step_id)];
    // The order of the exchanges is DeepSpeed's: it pairs up with the neighbour's order.
    if (forward) {
      if (valid(prev_mb) && has_prev) cmds.push_back(op(K::kSendGrad, prev_mb));
      if (valid(mb) && has_prev) cmds.push_back(op(K::kRecvActivation, mb));
    } else {
      if (valid(mb) && has_next) cmds.push_back(op(K::kRecvGrad, mb));
      if (valid(prev_mb) && has_next) cmds.push_back(op(K::kSendActivation, prev_mb));
    }
    if (loads && forward && valid(mb)) cmds.push_back(op(K::kLoadMicroBatch, mb));
    if (valid(mb)) cmds.push_back(op(forward ? K::kForwardPass : K::kBackwardPass, mb));
    if (step_id == total_steps - 1) {
      cmds.push_back({K::kReduceTiedGrads});
      cmds.push_back({K::kReduceGrads});
      cmds.push_back({K::kOptimizerStep});
    }
    prev_mb = mb;
  }
  return steps;
}

std::vector<Step> inference_schedule(int micro_batches, int stages, int stage_id) {
  check_shape(micro_batches, stages, stage_id);
  const auto valid = [micro_batches](int mb) { return mb >= 0 && mb < micro_batches; };
  const bool has_prev = stage_id > 0;
  const bool has_next = stage_id < stages - 1;

  const int total_steps = micro_batches + stages - 1;
  std::vector<Step> steps(static_cast<size_t>(total_steps));
  for (int step_id = 0; step_id < total_steps; ++step_id) {
    const int mb = step_id - stage_id;
    // Neighbours use opposite buffers in a step, so a send never overwrites what is received.
    const int recv_buf = is_even(stage_id) ? step_id % 2 : (step_id + 1) % 2;
    const int send_buf = 1 - recv_buf;
    Step& cmds = steps[static_cast<size_t>(step_id)];
    if ((!has_prev || !has_next) && valid(mb)) {
      cmds.push_back({K::kLoadMicroBatch, recv_buf, mb});
    }
    const auto send = [&] {
      if (has_next && valid(mb - 1)) cmds.push_back({K::kSendActivation, send_buf, mb - 1});
    };
    const auto recv = [&] {
      if (has_prev && valid(mb)) cmds.push_back({K::kRecvActivation, recv_buf, mb});
    };
    // Even stages send first and odd ones receive first, so blocking pairs line up.
    if (is_even(stage_id)) {
      send();
      recv();
    } else {
      recv();
      send();
    }
    if (valid(mb)) cmds.push_back({K::kForwardPass, recv_buf, mb});
  }
  return steps;
}

}  // namespace ds::pipeline
