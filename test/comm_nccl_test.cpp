// The NCCL backend on real GPUs (label `cuda`; skipped without a GPU): every collective and
// reduction and dtype on one rank per GPU (up to 4), send/recv around the ring where there are
// two or more, with exact values, and the unique id passed through the store. Then the same on 2
// and 3 ranks whatever the GPUs, ranks sharing a GPU each being a host of its own to NCCL
// (NCCL_HOSTID), which refuses two ranks on one GPU of one host but joins hosts over its network
// transport: so that a one-GPU machine runs NCCL across ranks.
#include <cuda_runtime_api.h>

#include <cstdlib>

#include "comm_helpers.h"
#include "comm_values.h"

using namespace ds;
using namespace ds::testing;
using comm::ReduceOp;
using tensor::DType;

namespace {

// The GPUs this machine shows. Counting them initialises CUDA, which must not happen in the
// parent before it forks the ranks, so a child counts.
int gpu_count() {
  const auto probe = run_processes(
      1,
      [](int) {
        int n = 0;
        return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
      },
      60s);
  return probe[0].code;
}

// A device copy of a host tensor, and back.
struct DeviceTensor {
  tensor::Tensor host;
  void* device = nullptr;
  tensor::Tensor view;

  DeviceTensor(size_t count, DType dtype, int gpu) : host(make(count, dtype)) {
    cudaSetDevice(gpu);
    expect(cudaMalloc(&device, std::max<size_t>(host.nbytes(), 1)) == cudaSuccess, "cudaMalloc");
    view = tensor::Tensor::wrap(device, {static_cast<int64_t>(count)}, dtype,
                                tensor::Device::cuda(gpu));
  }
  ~DeviceTensor() { cudaFree(device); }
  void upload() { cudaMemcpy(device, host.raw(), host.nbytes(), cudaMemcpyHostToDevice); }
  void download() { cudaMemcpy(host.raw(), device, host.nbytes(), cudaMemcpyDeviceToHost); }
};

int gpu_of(const comm::ProcessGroup& pg) { return pg.context().cuda_device; }

// How far NCCL's `op` over the group may stray from the exact result. An average over a count that
// is not a power of two multiplies each rank's value by 1/n rounded to the data's type before the
// sum (ncclAvg as PreMulSum), which rounds where the CPU backends' sum / n does not: within one
// epsilon of the type on these values (worst case over every summation order, checked with
// PyTorch's roundings); exact otherwise.
float tolerance(const comm::ProcessGroup& pg, ReduceOp op, DType dtype) {
  const int n = pg.size();
  if (op != ReduceOp::kAvg || (n & (n - 1)) == 0) return 0;
  switch (dtype) {
    case DType::kF32:
      return 0x1p-23f;
    case DType::kBF16:
      return 0x1p-7f;
    case DType::kF16:
      return 0x1p-10f;
  }
  return 0;
}

// Each collective on device buffers, against the values comm_values.h makes exact (the same
// checks as comm_collectives_test's on the CPU backends).
void check_allreduce(comm::ProcessGroup& pg, DType dtype, size_t count) {
  const int rank = pg.rank();
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
    DeviceTensor t(count, dtype, gpu_of(pg));
    for (size_t i = 0; i < count; ++i) put(t.host, i, value(rank, i));
    t.upload();
    pg.allreduce(t.view, op);
    t.download();
    expect_values(
        t.host, [&](size_t i) { return reduced(op, pg.size(), i, value); },
        fmt::format("nccl allreduce {}", comm::reduce_op_name(op)), tolerance(pg, op, dtype));
  }
}

void check_reduce_scatter(comm::ProcessGroup& pg, DType dtype, size_t count) {
  const int rank = pg.rank();
  const size_t n = static_cast<size_t>(pg.size());
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
    DeviceTensor in(count * n, dtype, gpu_of(pg)), out(count, dtype, gpu_of(pg));
    for (size_t i = 0; i < count * n; ++i) put(in.host, i, value(rank, i));
    in.upload();
    pg.reduce_scatter(out.view, in.view, op);
    out.download();
    const size_t offset = count * static_cast<size_t>(rank);
    expect_values(
        out.host, [&](size_t i) { return reduced(op, pg.size(), offset + i, value); },
        fmt::format("nccl reduce_scatter {}", comm::reduce_op_name(op)), tolerance(pg, op, dtype));
  }
}

void check_allgather(comm::ProcessGroup& pg, DType dtype, size_t count) {
  const int rank = pg.rank();
  DeviceTensor in(count, dtype, gpu_of(pg)),
      out(count * static_cast<size_t>(pg.size()), dtype, gpu_of(pg));
  for (size_t i = 0; i < count; ++i) put(in.host, i, value(rank, i));
  in.upload();
  pg.allgather(out.view, in.view);
  out.download();
  expect_values(
      out.host, [&](size_t i) { return value(static_cast<int>(i / count), i % count); },
      "nccl allgather");
}

void check_broadcast(comm::ProcessGroup& pg, DType dtype, size_t count) {
  const int root = pg.size() - 1;
  DeviceTensor b(count, dtype, gpu_of(pg));
  if (pg.rank() == root) {
    for (size_t i = 0; i < count; ++i) put(b.host, i, value(root, i));
  }
  b.upload();
  pg.broadcast(b.view, root);
  b.download();
  expect_values(
      b.host, [&](size_t i) { return value(root, i); }, "nccl broadcast");
}

// Around the ring: each rank sends to the next and receives from the previous. NCCL runs a
// group's point-to-point ops in order on one stream, each waiting for its peer's match, so the
// even ranks send first and the odd ones receive first, as the pipeline's schedule orders its
// sends and receives (with an odd group size the last rank pairs with rank 0, both even, so it
// receives first too).
void check_sendrecv(comm::ProcessGroup& pg, DType dtype, size_t count) {
  const int n = pg.size(), rank = pg.rank();
  const int next = (rank + 1) % n, prev = (rank + n - 1) % n;
  DeviceTensor out(count, dtype, gpu_of(pg)), in(count, dtype, gpu_of(pg));
  for (size_t i = 0; i < count; ++i) put(out.host, i, value(rank, i));
  out.upload();
  const bool send_first = rank % 2 == 0 && !(n % 2 == 1 && rank == n - 1);
  if (send_first) {
    pg.send(out.view, next, /*tag=*/7);
    pg.recv(in.view, prev, /*tag=*/7);
  } else {
    pg.recv(in.view, prev, /*tag=*/7);
    pg.send(out.view, next, /*tag=*/7);
  }
  in.download();
  expect_values(
      in.host, [&](size_t i) { return value(prev, i); }, "nccl send/recv");
}

// Rank `rank` of `n` on GPU `gpu`. No CUDA call happened before the fork.
int check_rank(int rank, int n, int port, int gpu) {
  comm::TcpStoreOptions options;
  options.port = port;
  options.token = kTestToken;
  options.is_server = rank == 0;
  options.rank = rank;
  auto root = std::make_shared<comm::TcpStore>(options);
  comm::rendezvous(*root, rank, n, 60s);
  comm::GroupContext context;
  context.rank = rank;
  context.size = n;
  context.store = std::make_shared<comm::PrefixStore>("pg/world", root);
  context.root_store = root;
  context.cuda_device = gpu;
  auto pg = comm::create_process_group(std::move(context));
  expect(pg->backend() == "nccl", "backend {}", pg->backend());

  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (size_t count : {size_t{1}, size_t{7}, size_t{(1u << 20) + 3}}) {
      check_allreduce(*pg, dtype, count);
      check_reduce_scatter(*pg, dtype, count);
      check_allgather(*pg, dtype, count);
      check_broadcast(*pg, dtype, count);
      if (n > 1) check_sendrecv(*pg, dtype, count);
    }
  }
  pg->barrier();
  return 0;
}

}  // namespace

TEST_CASE("nccl: collectives on every GPU of this machine", "[comm][nccl]") {
  int n = gpu_count();
  if (n < 1) {
    WARN("no GPU: the NCCL test is skipped");
    return;
  }
  // comm_values.h's values are exact in bf16 and f16 over up to 4 ranks.
  n = std::min(n, 4);
  const int port = comm::pick_free_port();
  require_all_ok(run_processes(
      n, [&](int rank) { return check_rank(rank, n, port, rank); }, 300s));
}

TEST_CASE("nccl: collectives across ranks that share GPUs as NCCL hosts of their own",
          "[comm][nccl]") {
  const int gpus = gpu_count();
  if (gpus < 1) {
    WARN("no GPU: the NCCL test is skipped");
    return;
  }
  // 3: an odd ring, where two neighbours both receive first.
  for (int n : {2, 3}) {
    INFO(n << " ranks on " << gpus << " GPU(s)");
    const int port = comm::pick_free_port();
    require_all_ok(run_processes(
        n,
        [&](int rank) {
          // Read by NCCL at its first call, in this child only. Loopback: the "hosts" are one.
          ::setenv("NCCL_HOSTID", fmt::format("dstrain-test-host-{}", rank).c_str(), 1);
          ::setenv("NCCL_SOCKET_IFNAME", "lo", 1);
          return check_rank(rank, n, port, rank % gpus);
        },
        300s));
  }
}
