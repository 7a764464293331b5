// Every collective, dtype and awkward size on 2, 3 and 4 real processes over loopback, for
// both CPU backends, checked for exact values.
#include <algorithm>

#include "comm_helpers.h"
#include "comm_values.h"

using namespace ds;
using namespace ds::testing;
using comm::Backend;
using comm::ReduceOp;
using tensor::DType;

namespace {

constexpr size_t kSizes[] = {0, 1, 7, (1u << 20) + 3};
constexpr DType kTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

void check_allreduce(comm::ProcessGroup& pg, DType dtype, size_t count) {
  const int n = pg.size();
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
    auto t = make(count, dtype);
    for (size_t i = 0; i < count; ++i) put(t, i, value(pg.rank(), i));
    pg.allreduce(t, op);
    expect_values(
        t, [&](size_t i) { return reduced(op, n, i, value); },
        fmt::format("allreduce {}", comm::reduce_op_name(op)));
  }
}

void check_reduce_scatter(comm::ProcessGroup& pg, DType dtype, size_t count) {
  const int n = pg.size();
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
    auto in = make(count * static_cast<size_t>(n), dtype);
    for (size_t i = 0; i < count * static_cast<size_t>(n); ++i) put(in, i, value(pg.rank(), i));
    auto out = make(count, dtype);
    pg.reduce_scatter(out, in, op);
    const size_t offset = count * static_cast<size_t>(pg.rank());
    expect_values(
        out, [&](size_t i) { return reduced(op, n, offset + i, value); },
        fmt::format("reduce_scatter {}", comm::reduce_op_name(op)));
  }
}

void check_allgather(comm::ProcessGroup& pg, DType dtype, size_t count) {
  const size_t n = static_cast<size_t>(pg.size());
  auto in = make(count, dtype);
  for (size_t i = 0; i < count; ++i) put(in, i, value(pg.rank(), i));
  auto out = make(count * n, dtype);
  pg.allgather(out, in);
  expect_values(
      out,
      [&](size_t i) {
        return value(static_cast<int>(i / std::max<size_t>(count, 1)),
                     i % std::max<size_t>(count, 1));
      },
      "allgather");
  // In place: the input is this rank's block of the output.
  auto both = make(count * n, dtype);
  for (size_t i = 0; i < count; ++i)
    put(both, count * static_cast<size_t>(pg.rank()) + i, value(pg.rank(), i));
  auto mine = count == 0 ? both.view()
                         : both.slice_rows(static_cast<int64_t>(count) * pg.rank(),
                                           static_cast<int64_t>(count) * (pg.rank() + 1));
  pg.allgather(both, mine);
  expect_values(
      both,
      [&](size_t i) {
        return value(static_cast<int>(i / std::max<size_t>(count, 1)),
                     i % std::max<size_t>(count, 1));
      },
      "allgather in place");
}

void check_broadcast(comm::ProcessGroup& pg, DType dtype, size_t count) {
  const int root = pg.size() - 1;
  auto t = make(count, dtype);
  if (pg.rank() == root) {
    for (size_t i = 0; i < count; ++i) put(t, i, value(root, i));
  }
  pg.broadcast(t, root);
  expect_values(
      t, [&](size_t i) { return value(root, i); }, "broadcast");
}

void check_sendrecv(comm::ProcessGroup& pg, DType dtype, size_t count) {
  const int n = pg.size();
  const int next = (pg.rank() + 1) % n;
  const int prev = (pg.rank() + n - 1) % n;
  auto out = make(count, dtype);
  for (size_t i = 0; i < count; ++i) put(out, i, value(pg.rank(), i));
  auto in = make(count, dtype);
  // Both directions at once: a rank sends while its peer sends to it, whatever the size.
  auto sent = pg.send(out, next, /*tag=*/7, /*async_op=*/true);
  auto got = pg.recv(in, prev, /*tag=*/7, /*async_op=*/true);
  got->wait();
  sent->wait();
  expect_values(
      in, [&](size_t i) { return value(prev, i); }, "send/recv");
}

int check_everything(int rank, int n, int port, Backend backend) {
  World world = make_world(rank, n, port, backend);
  comm::ProcessGroup& pg = *world.group;
  expect(pg.backend() == comm::backend_name(backend), "backend is {}, expected {}", pg.backend(),
         comm::backend_name(backend));
  for (DType dtype : kTypes) {
    for (size_t count : kSizes) {
      check_allreduce(pg, dtype, count);
      check_reduce_scatter(pg, dtype, count);
      check_allgather(pg, dtype, count);
      check_broadcast(pg, dtype, count);
      check_sendrecv(pg, dtype, count);
    }
  }
  // Asynchronous collectives complete in issue order and can overlap the caller's work.
  auto a = make(1000, DType::kF32);
  auto b = make(1000, DType::kF32);
  for (size_t i = 0; i < 1000; ++i) {
    put(a, i, value(rank, i));
    put(b, i, 1.0f);
  }
  auto wa = pg.allreduce(a, ReduceOp::kSum, true);
  auto wb = pg.allreduce(b, ReduceOp::kMax, true);
  pg.barrier();
  wb->wait(30s);
  wa->wait(30s);
  expect_values(
      a, [&](size_t i) { return reduced(ReduceOp::kSum, n, i, value); }, "async");
  expect_values(
      b, [](size_t) { return 1.0f; }, "async max");
  pg.barrier();
  return 0;
}

void run_case(int n, Backend backend) {
  const int port = comm::pick_free_port();
  require_all_ok(
      run_processes(n, [&](int rank) { return check_everything(rank, n, port, backend); }));
}

}  // namespace

TEST_CASE("shm: every collective on 2, 3 and 4 processes", "[comm][shm]") {
  for (int n : {2, 3, 4}) {
    INFO("ranks: " << n);
    run_case(n, Backend::kShm);
  }
}

TEST_CASE("gloo: every collective on 2, 3 and 4 processes", "[comm][gloo]") {
  for (int n : {2, 3, 4}) {
    INFO("ranks: " << n);
    run_case(n, Backend::kGloo);
  }
}

TEST_CASE("auto picks shared memory for ranks on one host", "[comm]") {
  const int port = comm::pick_free_port();
  require_all_ok(run_processes(2, [&](int rank) {
    World world = make_world(rank, 2, port, Backend::kAuto);
    expect(world.group->backend() == "shm", "auto chose {}", world.group->backend());
    world.group->barrier();
    return 0;
  }));
}
