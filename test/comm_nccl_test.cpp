// The NCCL backend on real GPUs (label `cuda`; skipped without a GPU): every collective and
// dtype on one rank per GPU, with exact values, and the unique id passed through the store.
#include <cuda_runtime_api.h>

#include "comm_helpers.h"
#include "comm_values.h"

using namespace ds;
using namespace ds::testing;
using comm::ReduceOp;
using tensor::DType;

namespace {

int gpu_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
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

int check_rank(int rank, int n, int port) {
  // Each process sees its own GPU as device `rank`; no CUDA call happened before the fork.
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
  context.cuda_device = rank;
  auto pg = comm::create_process_group(std::move(context));
  expect(pg->backend() == "nccl", "backend {}", pg->backend());

  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (size_t count : {size_t{1}, size_t{7}, size_t{(1u << 20) + 3}}) {
      DeviceTensor t(count, dtype, rank);
      for (size_t i = 0; i < count; ++i) put(t.host, i, value(rank, i));
      t.upload();
      pg->allreduce(t.view, ReduceOp::kSum);
      t.download();
      expect_values(
          t.host,
          [&](size_t i) {
            float s = 0;
            for (int r = 0; r < n; ++r) s += value(r, i);
            return s;
          },
          "nccl allreduce");

      DeviceTensor in(count, dtype, rank), out(count * static_cast<size_t>(n), dtype, rank);
      for (size_t i = 0; i < count; ++i) put(in.host, i, value(rank, i));
      in.upload();
      pg->allgather(out.view, in.view);
      out.download();
      expect_values(
          out.host, [&](size_t i) { return value(static_cast<int>(i / count), i % count); },
          "nccl allgather");

      DeviceTensor b(count, dtype, rank);
      if (rank == 0)
        for (size_t i = 0; i < count; ++i) put(b.host, i, value(0, i));
      b.upload();
      pg->broadcast(b.view, 0);
      b.download();
      expect_values(
          b.host, [&](size_t i) { return value(0, i); }, "nccl broadcast");
    }
  }
  pg->barrier();
  return 0;
}

}  // namespace

TEST_CASE("nccl: collectives on every GPU of this machine", "[comm][nccl]") {
  int n = 0;
  {
    // Counting GPUs initialises CUDA, which must not happen in the parent before fork; ask
    // a child.
    auto probe = run_processes(
        1, [](int) { return gpu_count(); }, 60s);
    n = probe[0].code;
  }
  if (n < 1) {
    WARN("no GPU: the NCCL test is skipped");
    return;
  }
  const int port = comm::pick_free_port();
  require_all_ok(run_processes(
      n, [&](int rank) { return check_rank(rank, n, port); }, 300s));
}
