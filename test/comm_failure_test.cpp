// Failure behaviour with real processes: a rank that never arrives, a rank killed in the
// middle of collectives, a rank that stops taking part, and strangers on the store port
// during a run. Every case must end on its own, with a message naming the rank.
#include <signal.h>
#include <sys/socket.h>

#include <random>
#include <regex>
#include <thread>

#include "comm/store_wire.h"
#include "comm_helpers.h"
#include "comm_values.h"

using namespace ds;
using namespace ds::testing;
using Catch::Matchers::Contains;
using comm::Backend;

namespace {

// A client of the run's store for the test itself (it knows the token, like a rank).
std::unique_ptr<comm::TcpStore> observer(int port) {
  comm::TcpStoreOptions o;
  o.port = port;
  o.token = kTestToken;
  o.timeout = 30s;
  return std::make_unique<comm::TcpStore>(o);
}

void require_failed_naming(const bench::RankExit& e, const std::string& text) {
  INFO(e.output);
  CHECK_FALSE(e.timed_out);
  CHECK(e.code == 1);
  CHECK_THAT(e.output, Contains(text));
}

// The output names rank `rank` as gone: "rank 1 ..." or in a list, "ranks 1, 2 ..." — when a
// peer dies, a third rank may fail and leave too before the survivor asks who is gone.
void require_failed_naming_rank(const bench::RankExit& e, int rank) {
  INFO(e.output);
  CHECK_FALSE(e.timed_out);
  CHECK(e.code == 1);
  const std::regex names(fmt::format("ranks? (\\d+, )*{}(?!\\d)", rank));
  CHECK(std::regex_search(e.output, names));
}

}  // namespace

TEST_CASE("a rank that never arrives fails the others after the rendezvous timeout",
          "[comm][failure]") {
  const int port = comm::pick_free_port();
  auto exits = run_processes(4, [&](int rank) {
    if (rank == 2 || rank == 3) return 0;  // never shows up
    make_world(rank, 4, port, Backend::kAuto, 3s);
    return 0;
  });
  for (int r : {0, 1})
    require_failed_naming(exits[static_cast<size_t>(r)],
                          "ranks 2, 3 of 4 did not arrive within 3 s");
}

TEST_CASE("when rank 0 never arrives, the others cannot reach the store and say so",
          "[comm][failure]") {
  const int port = comm::pick_free_port();
  auto exits = run_processes(3, [&](int rank) {
    if (rank == 0) return 0;
    make_world(rank, 3, port, Backend::kAuto, 2s);
    return 0;
  });
  for (int r : {1, 2}) {
    require_failed_naming(exits[static_cast<size_t>(r)], "could not reach the store");
    CHECK_THAT(exits[static_cast<size_t>(r)].output, Contains("rank 0 hosts the store"));
  }
}

TEST_CASE("a rank killed mid-collective: the others fail naming it, without hanging",
          "[comm][failure]") {
  for (Backend backend : {Backend::kShm, Backend::kGloo}) {
    for (int victim : {1, 0}) {
      INFO(comm::backend_name(backend) << ", victim rank " << victim);
      const int port = comm::pick_free_port();
      bench::ForkedRanks ranks(
          3,
          [&](int rank) -> int {
            // Shared memory must notice the death by itself (a long timeout); Gloo does not
            // always wake a receive when its peer's connection drops, so it may take until
            // its per-operation timeout, which must still name the dead rank.
            World world =
                make_world(rank, 3, port, backend, 30s, backend == Backend::kShm ? 120s : 5s);
            auto t = make(1 << 18, tensor::DType::kF32);
            for (int i = 0;; ++i) {
              world.group->allreduce(t);
              if (i == 3) world.store->set(fmt::format("looping/{}", rank), "1");
            }
          },
          /*capture_output=*/true);
      {
        auto watch = observer(port);
        watch->wait({"looping/0", "looping/1", "looping/2"}, 60s);
      }
      std::this_thread::sleep_for(200ms);
      ranks.kill(victim, SIGKILL);
      auto exits = ranks.wait(90s, /*fail_fast=*/false);
      for (int r = 0; r < 3; ++r) {
        if (r == victim) continue;
        require_failed_naming_rank(exits[static_cast<size_t>(r)], victim);
      }
    }
  }
}

TEST_CASE("a rank that stops taking part is named after the collective timeout",
          "[comm][failure]") {
  const int port = comm::pick_free_port();
  auto exits = run_processes(3, [&](int rank) {
    World world = make_world(rank, 3, port, Backend::kShm, 30s, 2s);
    if (rank == 2) {
      std::this_thread::sleep_for(8s);  // alive, but never joins the allreduce
      return 0;
    }
    auto t = make(100, tensor::DType::kF32);
    world.group->allreduce(t);
    return 0;
  });
  for (int r : {0, 1}) {
    require_failed_naming(exits[static_cast<size_t>(r)], "rank 2 did not take part within 2 s");
  }
}

TEST_CASE(
    "garbage, wrong tokens and half-open connections on the store port do not disturb "
    "a run",
    "[comm][failure]") {
  const int port = comm::pick_free_port();
  bench::ForkedRanks ranks(
      2,
      [&](int rank) {
        World world = make_world(rank, 2, port, Backend::kAuto);
        world.store->get("attack/done", 60s);  // the strangers have had their go
        auto t = make(1000, tensor::DType::kF32);
        for (size_t i = 0; i < 1000; ++i) put(t, i, value(rank, i));
        world.group->allreduce(t);
        expect_values(
            t, [](size_t i) { return value(0, i) + value(1, i); }, "allreduce");
        world.group->barrier();
        if (rank == 0) {
          auto* tcp = dynamic_cast<comm::TcpStore*>(world.store.get());
          expect(tcp && tcp->server()->stats().dropped >= 30, "server dropped {} strangers",
                 tcp ? tcp->server()->stats().dropped : 0);
        }
        return 0;
      },
      /*capture_output=*/true);

  auto watch = observer(port);  // also waits until rank 0's server is up
  std::mt19937 rng(7);
  std::vector<comm::Fd> half_open;
  for (int i = 0; i < 10; ++i) {
    // Random bytes.
    comm::Fd junk = comm::connect_tcp("127.0.0.1", port, comm::Clock::now() + 5s);
    std::string bytes(64 + rng() % 512, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    ::send(junk.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    // A wrong token.
    comm::Fd wrong = comm::connect_tcp("127.0.0.1", port, comm::Clock::now() + 5s);
    const std::string hello = comm::wire::FrameWriter()
                                  .u8(static_cast<uint8_t>(comm::wire::Op::kHello))
                                  .str(comm::wire::kMagic)
                                  .str("not-the-token")
                                  .i64(1)
                                  .finish();
    ::send(wrong.get(), hello.data(), hello.size(), MSG_NOSIGNAL);
    // A truncated frame, then silence (the connection stays half-open).
    comm::Fd cut = comm::connect_tcp("127.0.0.1", port, comm::Clock::now() + 5s);
    ::send(cut.get(), hello.data(), hello.size() / 2, MSG_NOSIGNAL);
    half_open.push_back(std::move(cut));
    // A port scan: connect and leave.
    comm::connect_tcp("127.0.0.1", port, comm::Clock::now() + 5s).reset();
    half_open.push_back(comm::connect_tcp("127.0.0.1", port, comm::Clock::now() + 5s));
  }
  std::this_thread::sleep_for(200ms);
  watch->set("attack/done", "1");
  auto exits = ranks.wait(90s, false);
  require_all_ok(exits);
  CHECK_THAT(exits[0].output, Contains("dropped connection from"));
}
