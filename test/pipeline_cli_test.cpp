// `dsworker train.cfg --print-schedule`: the partition and every stage's instructions, with no
// launcher and no training.
#include <catch2/catch.hpp>
#include <string>

#include "process_helpers.h"

using Catch::Matchers::Contains;
using ds::testing::kBin;
using ds::testing::run;
using ds::testing::Run;

namespace {

const std::string kConfigs = ds::testing::kSource + "/configs/";

}  // namespace

TEST_CASE("pipeline plan: dsworker --print-schedule shows both stages of the 2-stage example",
          "[cli][pipeline]") {
  const Run r = run(kBin + "dsworker " + kConfigs + "pipeline-2stage.yaml --print-schedule");
  INFO(r.out);
  CHECK(r.code == 0);
  // gpt-small: 6 blocks of 1,774,464 parameters; the embedding (196,608) goes with h.0-h.2.
  CHECK_THAT(r.out, Contains("pipeline: 2 stages x 1 data-parallel, 8 micro-batches of 4, "
                             "partition=parameters"));
  CHECK_THAT(r.out, Contains("stage 0: layers embedding, h.0-h.2 (5,520,000 params); 2 buffers"));
  CHECK_THAT(r.out, Contains("stage 1: layers h.3-h.5, head (5,324,160 params); 2 buffers"));
  CHECK_THAT(r.out, Contains("layer  1: h.0        TransformerBlock      1,774,464 params"));
  CHECK_THAT(r.out, Contains("step  0: LoadMicroBatch(buffer_id=0) ForwardPass(buffer_id=0)\n"
                             "  step  1: SendActivation(buffer_id=0)\n"));
  CHECK_THAT(r.out, Contains("step  0: (idle)\n"
                             "  step  1: RecvActivation(buffer_id=0) LoadMicroBatch(buffer_id=0) "
                             "ForwardPass(buffer_id=0)\n"));
  CHECK_THAT(r.out, Contains("step 17: SendGrad(buffer_id=1) ReduceTiedGrads() ReduceGrads() "
                             "OptimizerStep()\n"));
  CHECK_THAT(r.out, !Contains("step 18"));
  CHECK_THAT(r.out, !Contains("loss"));  // nothing trained
}

TEST_CASE("pipeline plan: dsworker --print-schedule takes the world size from the command line",
          "[cli][pipeline]") {
  Run r =
      run(kBin + "dsworker " + kConfigs + "pipeline-2stage.yaml --print-schedule --world-size 4");
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("pipeline: 2 stages x 2 data-parallel"));
  // A world the stages do not divide is a config error.
  r = run(kBin + "dsworker " + kConfigs + "pipeline-2stage.yaml --print-schedule --world-size 3");
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("not divisible by 2 pipeline stages"));
  // --world-size means nothing without --print-schedule.
  r = run(kBin + "dsworker " + kConfigs + "pipeline-2stage.yaml --world-size 2");
  CHECK(r.code != 0);
}

TEST_CASE("pipeline plan: dsworker --print-schedule with no pipeline is one stage",
          "[cli][pipeline]") {
  const Run r = run(kBin + "dsworker " + kConfigs + "tiny.yaml --print-schedule");
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("pipeline: 1 stage x 1 data-parallel"));
  CHECK_THAT(r.out, Contains("stage 0: layers embedding, h.0-h.3, head"));
}
