// worker::bootstrap() with real processes: environment -> store -> world and topology groups.
#include "comm_helpers.h"
#include "comm_values.h"
#include "worker/bootstrap.h"

using namespace ds;
using namespace ds::testing;
using Catch::Matchers::Contains;

namespace {

worker::EnvMap rank_env(int rank, int n, int port) {
  return {{"RANK", std::to_string(rank)},       {"WORLD_SIZE", std::to_string(n)},
          {"LOCAL_RANK", std::to_string(rank)}, {"LOCAL_WORLD_SIZE", std::to_string(n)},
          {"MASTER_ADDR", "127.0.0.1"},         {"MASTER_PORT", std::to_string(port)},
          {"DS_RUN_ID", "bootstrap-test"},      {"DS_RUN_TOKEN", kTestToken}};
}

}  // namespace

TEST_CASE("bootstrap: 4 processes, pipe 2 x data 2", "[bootstrap]") {
  const int port = comm::pick_free_port();
  require_all_ok(run_processes(4, [&](int rank) {
    worker::BootstrapOptions options;
    options.pipe_stages = 2;
    worker::Bootstrap boot = worker::bootstrap(options, rank_env(rank, 4, port));
    expect(boot.info.rank == rank && boot.world->size() == 4, "world of {}", boot.world->size());
    expect(boot.topology.data == 2 && boot.topology.pipe == 2, "topology");
    auto t = make(7, tensor::DType::kF32);
    for (size_t i = 0; i < 7; ++i) put(t, i, static_cast<float>(rank));
    boot.groups.data->allreduce(t);
    const float want = boot.topology.stage_of(rank) == 0 ? 1.0f : 5.0f;
    expect_values(
        t, [&](size_t) { return want; }, "data group");
    auto p = make(3, tensor::DType::kF32);
    for (size_t i = 0; i < 3; ++i) put(p, i, static_cast<float>(rank));
    boot.groups.pipe->allreduce(p, comm::ReduceOp::kMax);
    const float top = static_cast<float>(boot.topology.rank_of(1, boot.topology.dp_index_of(rank)));
    expect_values(
        p, [&](size_t) { return top; }, "pipe group");
    boot.world->barrier();
    return 0;
  }));
}

TEST_CASE("bootstrap: a missing rank fails after DS_RENDEZVOUS_TIMEOUT", "[bootstrap]") {
  const int port = comm::pick_free_port();
  auto exits = run_processes(3, [&](int rank) {
    if (rank == 1) return 0;
    worker::EnvMap env = rank_env(rank, 3, port);
    env.insert_or_assign("DS_RENDEZVOUS_TIMEOUT", std::string("2.5"));
    worker::bootstrap({}, env);
    return 0;
  });
  for (int r : {0, 2}) {
    INFO(exits[static_cast<size_t>(r)].output);
    CHECK(exits[static_cast<size_t>(r)].code == 1);
    CHECK_THAT(exits[static_cast<size_t>(r)].output,
               Contains("rank 1 of 3 did not arrive within 2.5 s"));
  }
}

TEST_CASE("bootstrap: a rank with the wrong token is turned away, exit code 2", "[bootstrap]") {
  const int port = comm::pick_free_port();
  auto exits = run_processes(2, [&](int rank) {
    worker::EnvMap env = rank_env(rank, 2, port);
    env.insert_or_assign("DS_RENDEZVOUS_TIMEOUT", std::string("5"));
    if (rank == 1) env.insert_or_assign("DS_RUN_TOKEN", std::string("stale-token"));
    worker::bootstrap({}, env);
    return 0;
  });
  INFO(exits[1].output);
  CHECK(exits[1].code == 2);
  CHECK_THAT(exits[1].output, Contains("rejected this process") && Contains("DS_RUN_TOKEN"));
  CHECK(exits[0].code == 1);  // rank 0 waits for rank 1, which never registers
}

TEST_CASE("bootstrap: no environment means one rank", "[bootstrap]") {
  worker::Bootstrap boot = worker::bootstrap({}, {});
  CHECK(boot.info.world_size == 1);
  CHECK(boot.world->backend() == "self");
  auto t = make(3, tensor::DType::kF32);
  boot.world->allreduce(t);
  boot.groups.data->barrier();
  boot.groups.pipe->barrier();
}
