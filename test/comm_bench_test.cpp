// dsbench comm as a user runs it: --np ranks, exact checks, JSON, bad flags.
#include <nlohmann/json.hpp>

#include "process_helpers.h"

using Catch::Matchers::Contains;
using ds::testing::kBin;
using ds::testing::run;

TEST_CASE("dsbench comm --np 3 -c 1: every operation, zero wrong, JSON", "[bench]") {
  const ds::testing::TempDir dir("dsbench_comm_test");
  const std::string json = dir.file("comm.json");
  const auto r =
      run(kBin + "dsbench comm --np 3 -c 1 --op all -b 8 -e 1M -f 32 -n 2 -w 1 --json " + json);
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("plain TCP stream") && Contains("wrong elements: 0"));
  for (const char* op : {"allreduce", "reduce_scatter", "allgather", "broadcast", "sendrecv"}) {
    CHECK_THAT(r.out, Contains(op));
  }
  std::ifstream in(json);
  const auto doc = nlohmann::json::parse(in);
  CHECK(doc["ranks"] == 3);
  CHECK(doc["wrong"] == 0);
  CHECK(doc["results"].size() >= 10);
  CHECK(doc["results"][0].contains("busbw_gbps"));
}

TEST_CASE("dsbench comm: 16-bit types and the Gloo backend", "[bench]") {
  const auto r = run(
      kBin +
      "dsbench comm --np 2 --backend gloo --dtype bf16 -c 1 -b 1K -e 64K -f 8 -n 2 -w 1 --no-tcp");
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("backend gloo") && Contains("bf16") && Contains("wrong elements: 0"));
}

TEST_CASE("dsbench comm: bad flags are usage errors", "[bench]") {
  CHECK(run(kBin + "dsbench comm --np 2 --op alltoall").code == 2);
  CHECK(run(kBin + "dsbench comm --np 2 --dtype f64").code == 2);
  const auto r = run(kBin + "dsbench comm --np 2 -e 12Q");
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("-e '12Q' is not a size"));
}
