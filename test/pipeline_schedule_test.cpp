// The 1F1B schedule against DeepSpeed's TrainSchedule (deepspeed/runtime/pipe/schedule.py).
// The expected streams are written in DeepSpeed's repr, one line per step. S=2, M=3 was
// worked out by hand from _step_to_micro_batch; all of them are what DeepSpeed's own
// schedule.py yields for the same arguments.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "pipeline/schedule.h"

using ds::pipeline::Instruction;
using ds::pipeline::InstructionKind;
using ds::pipeline::Step;
using K = InstructionKind;

namespace {

struct Expected {
  int buffers;
  const char* steps;  // "i: Instr(...) Instr(...)" per line, after a leading newline
};

// TrainS2M3
const std::vector<Expected> kTrainS2M3 = {
    {2, R"(
0: LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
1: SendActivation(buffer_id=0)
2: LoadMicroBatch(buffer_id=1) ForwardPass(buffer_id=1)
3: RecvGrad(buffer_id=0) SendActivation(buffer_id=1) BackwardPass(buffer_id=0)
4: LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
5: RecvGrad(buffer_id=1) SendActivation(buffer_id=0) BackwardPass(buffer_id=1)
6:
7: RecvGrad(buffer_id=0) BackwardPass(buffer_id=0) ReduceTiedGrads() ReduceGrads() OptimizerStep())"},
    {2, R"(
0:
1: RecvActivation(buffer_id=0) LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
2: BackwardPass(buffer_id=0)
3: SendGrad(buffer_id=0) RecvActivation(buffer_id=1) LoadMicroBatch(buffer_id=1) ForwardPass(buffer_id=1)
4: BackwardPass(buffer_id=1)
5: SendGrad(buffer_id=1) RecvActivation(buffer_id=0) LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
6: BackwardPass(buffer_id=0)
7: SendGrad(buffer_id=0) ReduceTiedGrads() ReduceGrads() OptimizerStep())"},
};
// TrainS4M8
const std::vector<Expected> kTrainS4M8 = {
    {4, R"(
0: LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
1: SendActivation(buffer_id=0)
2: LoadMicroBatch(buffer_id=1) ForwardPass(buffer_id=1)
3: SendActivation(buffer_id=1)
4: LoadMicroBatch(buffer_id=2) ForwardPass(buffer_id=2)
5: SendActivation(buffer_id=2)
6: LoadMicroBatch(buffer_id=3) ForwardPass(buffer_id=3)
7: RecvGrad(buffer_id=0) SendActivation(buffer_id=3) BackwardPass(buffer_id=0)
8: LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
9: RecvGrad(buffer_id=1) SendActivation(buffer_id=0) BackwardPass(buffer_id=1)
10: LoadMicroBatch(buffer_id=1) ForwardPass(buffer_id=1)
11: RecvGrad(buffer_id=2) SendActivation(buffer_id=1) BackwardPass(buffer_id=2)
12: LoadMicroBatch(buffer_id=2) ForwardPass(buffer_id=2)
13: RecvGrad(buffer_id=3) SendActivation(buffer_id=2) BackwardPass(buffer_id=3)
14: LoadMicroBatch(buffer_id=3) ForwardPass(buffer_id=3)
15: RecvGrad(buffer_id=0) SendActivation(buffer_id=3) BackwardPass(buffer_id=0)
16:
17: RecvGrad(buffer_id=1) BackwardPass(buffer_id=1)
18:
19: RecvGrad(buffer_id=2) BackwardPass(buffer_id=2)
20:
21: RecvGrad(buffer_id=3) BackwardPass(buffer_id=3) ReduceTiedGrads() ReduceGrads() OptimizerStep())"},
    {3, R"(
0:
1: RecvActivation(buffer_id=0) ForwardPass(buffer_id=0)
2: SendActivation(buffer_id=0)
3: RecvActivation(buffer_id=1) ForwardPass(buffer_id=1)
4: SendActivation(buffer_id=1)
5: RecvActivation(buffer_id=2) ForwardPass(buffer_id=2)
6: RecvGrad(buffer_id=0) SendActivation(buffer_id=2) BackwardPass(buffer_id=0)
7: SendGrad(buffer_id=0) RecvActivation(buffer_id=0) ForwardPass(buffer_id=0)
8: RecvGrad(buffer_id=1) SendActivation(buffer_id=0) BackwardPass(buffer_id=1)
9: SendGrad(buffer_id=1) RecvActivation(buffer_id=1) ForwardPass(buffer_id=1)
10: RecvGrad(buffer_id=2) SendActivation(buffer_id=1) BackwardPass(buffer_id=2)
11: SendGrad(buffer_id=2) RecvActivation(buffer_id=2) ForwardPass(buffer_id=2)
12: RecvGrad(buffer_id=0) SendActivation(buffer_id=2) BackwardPass(buffer_id=0)
13: SendGrad(buffer_id=0) RecvActivation(buffer_id=0) ForwardPass(buffer_id=0)
14: RecvGrad(buffer_id=1) SendActivation(buffer_id=0) BackwardPass(buffer_id=1)
15: SendGrad(buffer_id=1) RecvActivation(buffer_id=1) ForwardPass(buffer_id=1)
16: RecvGrad(buffer_id=2) SendActivation(buffer_id=1) BackwardPass(buffer_id=2)
17: SendGrad(buffer_id=2)
18: RecvGrad(buffer_id=0) BackwardPass(buffer_id=0)
19: SendGrad(buffer_id=0)
20: RecvGrad(buffer_id=1) BackwardPass(buffer_id=1)
21: SendGrad(buffer_id=1) ReduceTiedGrads() ReduceGrads() OptimizerStep())"},
    {2, R"(
0:
1:
2: RecvActivation(buffer_id=0) ForwardPass(buffer_id=0)
3: SendActivation(buffer_id=0)
4: RecvActivation(buffer_id=1) ForwardPass(buffer_id=1)
5: RecvGrad(buffer_id=0) SendActivation(buffer_id=1) BackwardPass(buffer_id=0)
6: SendGrad(buffer_id=0) RecvActivation(buffer_id=0) ForwardPass(buffer_id=0)
7: RecvGrad(buffer_id=1) SendActivation(buffer_id=0) BackwardPass(buffer_id=1)
8: SendGrad(buffer_id=1) RecvActivation(buffer_id=1) ForwardPass(buffer_id=1)
9: RecvGrad(buffer_id=0) SendActivation(buffer_id=1) BackwardPass(buffer_id=0)
10: SendGrad(buffer_id=0) RecvActivation(buffer_id=0) ForwardPass(buffer_id=0)
11: RecvGrad(buffer_id=1) SendActivation(buffer_id=0) BackwardPass(buffer_id=1)
12: SendGrad(buffer_id=1) RecvActivation(buffer_id=1) ForwardPass(buffer_id=1)
13: RecvGrad(buffer_id=0) SendActivation(buffer_id=1) BackwardPass(buffer_id=0)
14: SendGrad(buffer_id=0) RecvActivation(buffer_id=0) ForwardPass(buffer_id=0)
15: RecvGrad(buffer_id=1) SendActivation(buffer_id=0) BackwardPass(buffer_id=1)
16: SendGrad(buffer_id=1) RecvActivation(buffer_id=1) ForwardPass(buffer_id=1)
17: RecvGrad(buffer_id=0) SendActivation(buffer_id=1) BackwardPass(buffer_id=0)
18: SendGrad(buffer_id=0)
19: RecvGrad(buffer_id=1) BackwardPass(buffer_id=1)
20: SendGrad(buffer_id=1)
21: ReduceTiedGrads() ReduceGrads() OptimizerStep())"},
    {2, R"(
0:
1:
2:
3: RecvActivation(buffer_id=0) LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
4: BackwardPass(buffer_id=0)
5: SendGrad(buffer_id=0) RecvActivation(buffer_id=1) LoadMicroBatch(buffer_id=1) ForwardPass(buffer_id=1)
6: BackwardPass(buffer_id=1)
7: SendGrad(buffer_id=1) RecvActivation(buffer_id=0) LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
8: BackwardPass(buffer_id=0)
9: SendGrad(buffer_id=0) RecvActivation(buffer_id=1) LoadMicroBatch(buffer_id=1) ForwardPass(buffer_id=1)
10: BackwardPass(buffer_id=1)
11: SendGrad(buffer_id=1) RecvActivation(buffer_id=0) LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
12: BackwardPass(buffer_id=0)
13: SendGrad(buffer_id=0) RecvActivation(buffer_id=1) LoadMicroBatch(buffer_id=1) ForwardPass(buffer_id=1)
14: BackwardPass(buffer_id=1)
15: SendGrad(buffer_id=1) RecvActivation(buffer_id=0) LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
16: BackwardPass(buffer_id=0)
17: SendGrad(buffer_id=0) RecvActivation(buffer_id=1) LoadMicroBatch(buffer_id=1) ForwardPass(buffer_id=1)
18: BackwardPass(buffer_id=1)
19: SendGrad(buffer_id=1)
20:
21: ReduceTiedGrads() ReduceGrads() OptimizerStep())"},
};
// InferenceS2M3
const std::vector<Expected> kInferenceS2M3 = {
    {2, R"(
0: LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)
1: LoadMicroBatch(buffer_id=1) SendActivation(buffer_id=0) ForwardPass(buffer_id=1)
2: LoadMicroBatch(buffer_id=0) SendActivation(buffer_id=1) ForwardPass(buffer_id=0)
3: SendActivation(buffer_id=0))"},
    {2, R"(
0:
1: LoadMicroBatch(buffer_id=0) RecvActivation(buffer_id=0) ForwardPass(buffer_id=0)
2: LoadMicroBatch(buffer_id=1) RecvActivation(buffer_id=1) ForwardPass(buffer_id=1)
3: LoadMicroBatch(buffer_id=0) RecvActivation(buffer_id=0) ForwardPass(buffer_id=0))"},
};

std::string render(const std::vector<Step>& steps) {
  std::string text;
  for (size_t i = 0; i < steps.size(); ++i) {
    text += fmt::format("\n{}:", i);
    for (const Instruction& instruction : steps[i]) {
      text += ' ';
      text += to_string(instruction);
    }
  }
  return text;
}

bool is_comm(K kind) {
  return kind == K::kSendActivation || kind == K::kRecvActivation || kind == K::kSendGrad ||
         kind == K::kRecvGrad;
}

// The micro-batches of one kind of message in one step, in order.
std::vector<int> micro_batches_of(const Step& step, K kind) {
  std::vector<int> ids;
  for (const Instruction& i : step) {
    if (i.kind == kind) ids.push_back(i.micro_batch);
  }
  return ids;
}

void check_invariants(int micro_batches, int stages) {
  INFO("micro_batches " << micro_batches << ", stages " << stages);
  std::vector<std::vector<Step>> all;
  for (int s = 0; s < stages; ++s)
    all.push_back(ds::pipeline::train_schedule(micro_batches, stages, s));
  const size_t total = static_cast<size_t>(2 * (micro_batches + stages - 1));
  for (int s = 0; s < stages; ++s) {
    INFO("stage " << s);
    const int buffers = ds::pipeline::train_num_pipe_buffers(micro_batches, stages, s);
    REQUIRE(all[s].size() == total);
    std::map<int, int> forwards, backwards, loads;
    std::set<int> live;  // forwarded, not yet backwarded
    size_t max_live = 0;
    for (size_t t = 0; t < total; ++t) {
      for (const Instruction& i : all[s][t]) {
        if (!ds::pipeline::has_buffer(i.kind)) continue;
        CHECK(i.micro_batch >= 0);
        CHECK(i.micro_batch < micro_batches);
        CHECK(i.buffer_id == i.micro_batch % buffers);
        if (i.kind == K::kLoadMicroBatch) ++loads[i.micro_batch];
        if (i.kind == K::kForwardPass) {
          ++forwards[i.micro_batch];
          // The buffer's previous micro-batch must be done with it.
          CHECK((i.micro_batch < buffers || backwards.count(i.micro_batch - buffers) == 1));
          live.insert(i.micro_batch);
          max_live = std::max(max_live, live.size());
        }
        if (i.kind == K::kBackwardPass) {
          CHECK(forwards.count(i.micro_batch) == 1);
          ++backwards[i.micro_batch];
          live.erase(i.micro_batch);
        }
        // Nothing is sent before it is computed.
        if (i.kind == K::kSendActivation) CHECK(forwards.count(i.micro_batch) == 1);
        if (i.kind == K::kSendGrad) CHECK(backwards.count(i.micro_batch) == 1);
      }
    }
    CHECK(max_live <= static_cast<size_t>(buffers));
    for (int mb = 0; mb < micro_batches; ++mb) {
      CHECK(forwards[mb] == 1);
      CHECK(backwards[mb] == 1);
      CHECK(loads[mb] == (s == 0 || s == stages - 1 ? 1 : 0));
    }
    // The batch ends with the reductions and the step, once.
    const Step& last = all[s].back();
    REQUIRE(last.size() >= 3);
    CHECK(last[last.size() - 3].kind == K::kReduceTiedGrads);
    CHECK(last[last.size() - 2].kind == K::kReduceGrads);
    CHECK(last[last.size() - 1].kind == K::kOptimizerStep);
  }
  // Within every step, each send meets a receive of the same micro-batch next door.
  for (size_t t = 0; t < total; ++t) {
    INFO("step " << t);
    for (int s = 0; s + 1 < stages; ++s) {
      CHECK(micro_batches_of(all[s][t], K::kSendActivation) ==
            micro_batches_of(all[s + 1][t], K::kRecvActivation));
      CHECK(micro_batches_of(all[s + 1][t], K::kSendGrad) ==
            micro_batches_of(all[s][t], K::kRecvGrad));
    }
    CHECK(micro_batches_of(all[0][t], K::kRecvActivation).empty());
    CHECK(micro_batches_of(all[0][t], K::kSendGrad).empty());
    CHECK(micro_batches_of(all[stages - 1][t], K::kSendActivation).empty());
    CHECK(micro_batches_of(all[stages - 1][t], K::kRecvGrad).empty());
    for (int s = 0; s < stages; ++s) {
      // At most one computation per step, and communication comes before it.
      int computes = 0;
      bool computed = false;
      for (const Instruction& i : all[s][t]) {
        if (i.kind == K::kForwardPass || i.kind == K::kBackwardPass) {
          ++computes;
          computed = true;
        }
        if (is_comm(i.kind)) CHECK_FALSE(computed);
      }
      CHECK(computes <= 1);
    }
  }
}

}  // namespace

TEST_CASE("pipeline schedule: instructions print like DeepSpeed's repr", "[pipeline][schedule]") {
  CHECK(to_string(Instruction{K::kForwardPass, 0, 0}) == "ForwardPass(buffer_id=0)");
  CHECK(to_string(Instruction{K::kRecvGrad, 3, 7}) == "RecvGrad(buffer_id=3)");
  CHECK(to_string(Instruction{K::kOptimizerStep}) == "OptimizerStep()");
  CHECK(to_string_with_micro_batch(Instruction{K::kSendActivation, 1, 5}) ==
        "SendActivation(buffer_id=1, micro_batch=5)");
  CHECK(to_string_with_micro_batch(Instruction{K::kReduceGrads}) == "ReduceGrads()");
}

TEST_CASE("pipeline schedule: num_pipe_buffers is max(2, min(stages - stage, micro_batches))",
          "[pipeline][schedule]") {
  CHECK(ds::pipeline::train_num_pipe_buffers(8, 4, 0) == 4);
  CHECK(ds::pipeline::train_num_pipe_buffers(8, 4, 1) == 3);
  CHECK(ds::pipeline::train_num_pipe_buffers(8, 4, 3) == 2);
  CHECK(ds::pipeline::train_num_pipe_buffers(3, 8, 0) == 3);
  CHECK(ds::pipeline::train_num_pipe_buffers(1, 1, 0) == 2);
}

TEST_CASE("pipeline schedule: train schedule, 2 stages x 3 micro-batches", "[pipeline][schedule]") {
  for (int s = 0; s < 2; ++s) {
    INFO("stage " << s);
    CHECK(ds::pipeline::train_num_pipe_buffers(3, 2, s) == kTrainS2M3[s].buffers);
    CHECK(render(ds::pipeline::train_schedule(3, 2, s)) == kTrainS2M3[s].steps);
  }
}

TEST_CASE("pipeline schedule: train schedule, 4 stages x 8 micro-batches", "[pipeline][schedule]") {
  for (int s = 0; s < 4; ++s) {
    INFO("stage " << s);
    CHECK(ds::pipeline::train_num_pipe_buffers(8, 4, s) == kTrainS4M8[s].buffers);
    CHECK(render(ds::pipeline::train_schedule(8, 4, s)) == kTrainS4M8[s].steps);
  }
}

TEST_CASE("pipeline schedule: micro-batch ids follow DeepSpeed's step mapping",
          "[pipeline][schedule]") {
  // Stage 1 of 4 over 8: forwards on odd steps from step 1, first backward at step 6.
  const auto steps = ds::pipeline::train_schedule(8, 4, 1);
  CHECK(steps[1].back() == Instruction{K::kForwardPass, 0, 0});
  CHECK(steps[6].back() == Instruction{K::kBackwardPass, 0, 0});
  CHECK(steps[7].front() == Instruction{K::kSendGrad, 0, 0});
  CHECK(steps[7].back() == Instruction{K::kForwardPass, 0, 3});
  CHECK(steps[20].back() == Instruction{K::kBackwardPass, 1, 7});
}

TEST_CASE("pipeline schedule: train schedule invariants over many shapes", "[pipeline][schedule]") {
  for (int stages = 1; stages <= 6; ++stages) {
    for (int micro_batches : {1, 2, 3, 4, 5, 8, 13}) check_invariants(micro_batches, stages);
  }
}

TEST_CASE("pipeline schedule: one stage: forward then backward per micro-batch",
          "[pipeline][schedule]") {
  const auto steps = ds::pipeline::train_schedule(2, 1, 0);
  CHECK(render(steps) ==
        "\n0: LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)"
        "\n1: BackwardPass(buffer_id=0)"
        "\n2: LoadMicroBatch(buffer_id=1) ForwardPass(buffer_id=1)"
        "\n3: BackwardPass(buffer_id=1) ReduceTiedGrads() ReduceGrads() OptimizerStep()");
}

TEST_CASE("pipeline schedule: inference schedule, 2 stages x 3 micro-batches",
          "[pipeline][schedule]") {
  for (int s = 0; s < 2; ++s) {
    INFO("stage " << s);
    CHECK(render(ds::pipeline::inference_schedule(3, 2, s)) == kInferenceS2M3[s].steps);
  }
}
