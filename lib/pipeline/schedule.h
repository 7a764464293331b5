// DeepSpeed's pipeline schedules (deepspeed/runtime/pipe/schedule.py) as data: for one
// stage, a list of steps, each a list of instructions that the stage's executor runs in
// order. A barrier may sit between two steps without deadlock: within a step, every send
// is matched by a receive of the same micro-batch on the neighbouring stage.
//
// TrainSchedule is synchronous 1F1B: each stage alternates forward and backward steps
// (even stages forward on even steps, odd stages on odd steps), and keeps at most
// num_pipe_buffers() micro-batches in flight.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ds::pipeline {

enum class InstructionKind {
  kLoadMicroBatch,  // first stage: the inputs; last stage: the labels
  kForwardPass,
  kBackwardPass,
  kSendActivation,  // to the next stage
  kRecvActivation,  // from the previous stage
  kSendGrad,        // to the previous stage: the gradient of its activation
  kRecvGrad,        // from the next stage
  kReduceTiedGrads,
  kReduceGrads,
  kOptimizerStep,
};

// DeepSpeed's class name: "ForwardPass", ...
std::string_view kind_name(InstructionKind kind);
// Whether DeepSpeed's instruction carries a buffer_id (all but the three at the batch's end).
bool has_buffer(InstructionKind kind);

struct Instruction {
  InstructionKind kind = InstructionKind::kForwardPass;
  int buffer_id = -1;    // -1 when the kind has none
  int micro_batch = -1;  // the micro-batch held in that buffer (DeepSpeed keeps it implicit)

  bool operator==(const Instruction&) const = default;
};

// DeepSpeed's repr: "ForwardPass(buffer_id=0)", "OptimizerStep()".
std::string to_string(const Instruction& instruction);
// The same with the micro-batch: "ForwardPass(buffer_id=0, micro_batch=3)".
std::string to_string_with_micro_batch(const Instruction& instruction);

using Step = std::vector<Instruction>;

// 2 * (micro_batches + stages - 1) steps for `stage_id`, the last one ending with
// ReduceTiedGrads, ReduceGrads, OptimizerStep.
std::vector<Step> train_schedule(int micro_batches, int stages, int stage_id);
// Buffers the train schedule cycles through: max(2, min(stages - stage_id, micro_batches)).
int train_num_pipe_buffers(int micro_batches, int stages, int stage_id);

// DeepSpeed's InferenceSchedule: forward passes only, micro_batches + stages - 1 steps,
// alternating between two buffers.
std::vector<Step> inference_schedule(int micro_batches, int stages, int stage_id);
inline constexpr int kInferenceNumPipeBuffers = 2;

}  // namespace ds::pipeline
