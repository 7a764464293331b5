// Pure parts of lib/comm (reduction kernels, topology, names) and process groups with ranks as
// threads over a HashStore: subgroups, the pipe x data groups, async order, the defaults of
// an incomplete backend.
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "comm/cpu_process_group.h"
#include "comm/ordered_executor.h"
#include "comm/reduce_kernels.h"
#include "comm/rendezvous.h"
#include "comm/topology.h"
#include "comm_helpers.h"
#include "comm_values.h"

using namespace ds;
using namespace ds::comm;
using namespace ds::testing;
using Catch::Matchers::Contains;
using tensor::DType;

TEST_CASE("reduce kernels: fp32 accumulation, one rounding, NaN-propagating max", "[comm]") {
  // 16-bit inputs whose pairwise bf16 sums would round differently from the fp32 sum.
  const float a = 256.0f, b = 1.0f, c = 1.0f;  // bf16(257) rounds to 256; 258 is exact
  uint16_t x[3] = {tensor::f32_to_bf16(a), tensor::f32_to_bf16(b), tensor::f32_to_bf16(c)};
  const void* inputs[] = {&x[0], &x[1], &x[2]};
  uint16_t out = 0;
  reduce_inputs(&out, inputs, 3, 1, DType::kBF16, ReduceOp::kSum, 3);
  CHECK(tensor::bf16_to_f32(out) == 258.0f);

  std::vector<float> p(5000), q(5000), r(5000);
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] = static_cast<float>(i);
    q[i] = -static_cast<float>(i);
  }
  q[17] = std::nanf("");
  const void* pq[] = {p.data(), q.data()};
  reduce_inputs(r.data(), pq, 2, p.size(), DType::kF32, ReduceOp::kMax, 2);
  CHECK(r[4999] == 4999.0f);
  CHECK(std::isnan(r[17]));
  reduce_inputs(r.data(), pq, 2, p.size(), DType::kF32, ReduceOp::kAvg, 2);
  CHECK(r[100] == 0.0f);

  std::vector<uint16_t> h(100);
  std::vector<float> f(100), back(100);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(i) * 0.37f - 11.0f;
  narrow_from_f32(h.data(), f.data(), f.size(), DType::kF16);
  widen_to_f32(back.data(), h.data(), h.size(), DType::kF16);
  for (size_t i = 0; i < f.size(); ++i) {
    CHECK(h[i] == tensor::f32_to_f16(f[i]));  // same rounding as the tensor library
    CHECK(back[i] == tensor::f16_to_f32(h[i]));
  }
}

TEST_CASE("reduce kernels: 16-bit conversions match the tensor library bit for bit", "[comm]") {
  // Every bf16 and f16 pattern widens the same; random and special f32 patterns narrow the same.
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> wide(all.size());
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    widen_to_f32(wide.data(), all.data(), all.size(), dtype);
    for (size_t i = 0; i < all.size(); ++i) {
      const float want =
          dtype == DType::kBF16 ? tensor::bf16_to_f32(all[i]) : tensor::f16_to_f32(all[i]);
      if (std::isnan(want)) {
        CHECK(std::isnan(wide[i]));
      } else if (std::bit_cast<uint32_t>(wide[i]) != std::bit_cast<uint32_t>(want)) {
        FAIL_CHECK(tensor::dtype_name(dtype) << " pattern " << i);
      }
    }
  }
  std::mt19937 rng(1);
  std::vector<float> values(200000);
  for (auto& v : values) v = std::bit_cast<float>(static_cast<uint32_t>(rng()));
  const float specials[] = {0.0f,        -0.0f,    INFINITY, -INFINITY, NAN,
                            1.00390625f, 65504.0f, 65520.0f, 1e-8f,     3.0e38f};
  std::copy(std::begin(specials), std::end(specials), values.begin());
  std::vector<uint16_t> narrow(values.size());
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    narrow_from_f32(narrow.data(), values.data(), values.size(), dtype);
    size_t mismatches = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t want =
          dtype == DType::kBF16 ? tensor::f32_to_bf16(values[i]) : tensor::f32_to_f16(values[i]);
      if (std::isnan(values[i])) {
        // NaN stays NaN; F16C keeps more of the payload than the software converter.
        const float back =
            dtype == DType::kBF16 ? tensor::bf16_to_f32(narrow[i]) : tensor::f16_to_f32(narrow[i]);
        mismatches += !std::isnan(back);
      } else {
        mismatches += narrow[i] != want;
      }
    }
    INFO(tensor::dtype_name(dtype));
    CHECK(mismatches == 0);
  }
}

TEST_CASE("topology: rank = stage * data + dp_index", "[comm]") {
  const Topology t = Topology::make(8, 2);
  CHECK(t.pipe == 2);
  CHECK(t.data == 4);
  CHECK(t.rank_of(1, 2) == 6);
  CHECK(t.stage_of(6) == 1);
  CHECK(t.dp_index_of(6) == 2);
  CHECK(t.data_group_ranks(1) == std::vector<int>{4, 5, 6, 7});
  CHECK(t.pipe_group_ranks(3) == std::vector<int>{3, 7});
  CHECK_THROWS_AS(Topology::make(6, 4), ds::UsageError);
  CHECK_THROWS_WITH(Topology::make(6, 4), Contains("do not divide"));
}

TEST_CASE("names: ranks, backends, durations", "[comm]") {
  CHECK(format_ranks({3}) == "rank 3");
  CHECK(format_ranks({2, 3}) == "ranks 2, 3");
  std::vector<int> many(40);
  for (int i = 0; i < 40; ++i) many[static_cast<size_t>(i)] = i;
  CHECK_THAT(format_ranks(many), Contains("and 24 more"));
  CHECK(parse_backend("gloo", "X") == Backend::kGloo);
  CHECK_THROWS_WITH(parse_backend("mpi", "DS_COMM_BACKEND"), Contains("DS_COMM_BACKEND='mpi'"));
  CHECK(format_duration(std::chrono::seconds(300)) == "300 s");
  CHECK(format_duration(std::chrono::milliseconds(2500)) == "2.5 s");
}

namespace {

// A backend with only allreduce: everything else must say it is not supported.
class AllreduceOnly : public ProcessGroup {
 public:
  using ProcessGroup::ProcessGroup;
  std::string_view backend() const override { return "fake"; }

 protected:
  WorkPtr allreduce_impl(TensorRef, ReduceOp, bool) override { return completed_work(); }
  bool accepts(const tensor::Device& d) const override { return d.is_cpu(); }
};

}  // namespace

TEST_CASE("a backend without an operation says so", "[comm]") {
  GroupContext context;
  context.store = std::make_shared<HashStore>();
  AllreduceOnly pg(context);
  auto t = make(4, DType::kF32);
  CHECK_NOTHROW(pg.allreduce(t));
  CHECK_THROWS_WITH(pg.broadcast(t, 0), "backend fake does not support broadcast");
  CHECK_THROWS_WITH(pg.barrier(), "backend fake does not support barrier");
  auto big = make(8, DType::kF32);
  CHECK_THROWS_WITH(pg.allgather(t, big), Contains("must hold 1 blocks"));
  CHECK_THROWS_WITH(pg.broadcast(t, 3), Contains("root 3 is not a rank"));
  auto gpu = tensor::Tensor::wrap(nullptr, {0}, DType::kF32, tensor::Device::cuda(0));
  CHECK_THROWS_WITH(pg.allreduce(gpu), Contains("cannot move a tensor on cuda:0"));
}

TEST_CASE("ordered executor: sync and async jobs run in issue order", "[comm]") {
  OrderedExecutor ex;
  std::vector<int> order;
  std::mutex m;
  auto job = [&](int i) {
    return [&, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(i % 2 ? 5 : 0));
      std::lock_guard lock(m);
      order.push_back(i);
    };
  };
  std::vector<WorkPtr> works;
  for (int i = 0; i < 10; ++i) works.push_back(ex.submit("job", job(i), i % 3 != 0));
  for (auto& w : works) w->wait();
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  auto failing = ex.submit(
      "failing", [] { throw ds::Error("boom"); }, true);
  CHECK_THROWS_WITH(failing->wait(), "boom");
  auto slow = ex.submit(
      "slow", [] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }, true);
  CHECK_THROWS_WITH(slow->wait(std::chrono::milliseconds(10)), Contains("did not finish"));
  slow->wait();
}

TEST_CASE("threads: every op on shm and gloo, subgroups and the pipe x data groups", "[comm]") {
  for (Backend backend : {Backend::kShm, Backend::kGloo}) {
    INFO(backend_name(backend));
    run_ranks(4, [&](int rank, std::shared_ptr<Store> store) {
      auto world = thread_group(rank, 4, store, backend);
      auto t = make(1000, DType::kBF16);
      for (size_t i = 0; i < 1000; ++i) put(t, i, value(rank, i));
      world->allreduce(t, ReduceOp::kAvg);
      expect_values(
          t, [](size_t i) { return value(0, i) * 2.5f; }, "world avg");

      // A subgroup of the odd ranks; the others get none.
      auto odd = world->new_group({1, 3}, "odd");
      expect((odd != nullptr) == (rank % 2 == 1), "membership of rank {}", rank);
      if (odd) {
        auto s = make(33, DType::kF32);
        for (size_t i = 0; i < 33; ++i) put(s, i, value(rank, i));
        odd->allreduce(s);
        expect_values(
            s, [](size_t i) { return value(1, i) + value(3, i); }, "odd sum");
        expect(odd->name() == "odd" && odd->size() == 2, "odd group {}", odd->name());
      }
      // A twin of the world on another backend (as the trainer's NCCL twin of a data group).
      const Backend other = backend == Backend::kShm ? Backend::kGloo : Backend::kShm;
      auto twin = world->new_group({0, 1, 2, 3}, "twin", other, -1);
      expect(twin->backend() == backend_name(other), "twin backend {}", twin->backend());
      auto w = make(7, DType::kF32);
      for (size_t i = 0; i < 7; ++i) put(w, i, value(rank, i));
      twin->allreduce(w);
      expect_values(
          w, [](size_t i) { return value(0, i) + value(1, i) + value(2, i) + value(3, i); },
          "twin sum");

      // pipe 2 x data 2: data groups {0,1} {2,3}; pipelines {0,2} {1,3}.
      const Topology topo = Topology::make(4, 2);
      TopologyGroups groups = make_topology_groups(*world, topo);
      auto d = make(5, DType::kF32);
      for (size_t i = 0; i < 5; ++i) put(d, i, static_cast<float>(rank));
      groups.data->allreduce(d);
      const float stage_sum = topo.stage_of(rank) == 0 ? 0 + 1 : 2 + 3;
      expect_values(
          d, [&](size_t) { return stage_sum; }, "data group sum");
      // Stage 0 sends activations down its pipeline, stage 1 receives them.
      auto act = make(64, DType::kF16);
      if (topo.stage_of(rank) == 0) {
        for (size_t i = 0; i < 64; ++i) put(act, i, value(rank, i));
        groups.pipe->send(act, 1);
      } else {
        groups.pipe->recv(act, 0);
        const int from = topo.rank_of(0, topo.dp_index_of(rank));
        expect_values(
            act, [&](size_t i) { return value(from, i); }, "pipeline activation");
      }
      expect(groups.data->name() == fmt::format("data.{}", topo.stage_of(rank)), "data name");
      world->barrier();
    });
  }
}

TEST_CASE("threads: a single rank is its own group", "[comm]") {
  run_ranks(1, [](int rank, std::shared_ptr<Store> store) {
    auto world = thread_group(rank, 1, store, Backend::kAuto);
    expect(world->backend() == "self", "backend {}", world->backend());
    auto t = make(9, DType::kF16);
    for (size_t i = 0; i < 9; ++i) put(t, i, value(0, i));
    world->allreduce(t, ReduceOp::kAvg);
    expect_values(
        t, [](size_t i) { return value(0, i); }, "self avg");
    auto out = make(9, DType::kF16);
    world->allgather(out, t);
    expect_values(
        out, [](size_t i) { return value(0, i); }, "self allgather");
    world->barrier();
  });
}

TEST_CASE("threads: mismatched collectives are reported, not hung", "[comm]") {
  CHECK_THROWS_WITH(run_ranks(2,
                              [](int rank, std::shared_ptr<Store> store) {
                                auto world = thread_group(rank, 2, store, Backend::kShm);
                                auto t = make(rank == 0 ? 10 : 20, DType::kF32);
                                world->allreduce(t);
                              }),
                    Contains("issued allreduce of") && Contains("while this rank issued"));
}
