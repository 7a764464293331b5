// Whether a run moves GPU buffers over NCCL, decided from the GPUs' UUIDs (worker/gpu_sharing.h):
// the claims on a store, the obstacles' wording, and the agreement of four thread ranks over Gloo
// for each way ranks can sit on GPUs. The UUIDs are given, so no GPU is needed.
#include "worker/gpu_sharing.h"

#include <array>
#include <catch2/catch.hpp>
#include <mutex>

#include "comm_helpers.h"
#include "zero/process_group_comm.h"

using Catch::Matchers::Contains;
using ds::comm::Backend;
using ds::worker::DeviceChoice;
namespace tensor = ds::tensor;
namespace worker = ds::worker;

namespace {

DeviceChoice on_gpu(int index, Backend backend = Backend::kNccl) {
  return {tensor::Device::cuda(index), false, backend, ""};
}

DeviceChoice on_cpu() { return {tensor::Device::cpu(), false, Backend::kAuto, ""}; }

struct Outcome {
  bool nccl = false;
  std::string why_staged;
  std::string usage_error;  // the UsageError's message, when the rank refused to run
};

// Four thread ranks over Gloo, rank r on `devices[r]` with GPU `uuids[r]`, each asking for
// `asked`: what each rank decided.
std::array<Outcome, 4> agree(const std::array<DeviceChoice, 4>& devices,
                             const std::array<std::string, 4>& uuids,
                             Backend asked = Backend::kAuto) {
  std::array<Outcome, 4> outcomes;
  ds::testing::run_ranks(4, [&](int rank, std::shared_ptr<ds::comm::Store> store) {
    ds::zero::ProcessGroupComm world(ds::testing::thread_group(rank, 4, store, Backend::kGloo));
    Outcome& outcome = outcomes[static_cast<size_t>(rank)];
    try {
      const worker::GpuBufferPath path =
          worker::agree_gpu_buffer_path(devices[rank], uuids[rank], asked, *store, world);
      outcome.nccl = path.nccl;
      outcome.why_staged = path.why_staged;
    } catch (const ds::UsageError& e) {
      outcome.usage_error = e.what();
    }
  });
  return outcomes;
}

}  // namespace

TEST_CASE("gpu sharing: the first claim of a GPU is alone and later ones learn who came first",
          "[device]") {
  ds::comm::HashStore store;
  CHECK_FALSE(worker::claim_gpu(store, "GPU-a", 3));
  CHECK_FALSE(worker::claim_gpu(store, "GPU-b", 1));
  CHECK(worker::claim_gpu(store, "GPU-a", 0) == 3);
  CHECK(worker::claim_gpu(store, "GPU-a", 2) == 3);
  CHECK(worker::claim_gpu(store, "GPU-b", 5) == 1);
}

TEST_CASE("gpu sharing: each obstacle to NCCL is named with its rank", "[device]") {
  CHECK_FALSE(worker::nccl_obstacle(on_gpu(0), "GPU-a", std::nullopt, 2));
  CHECK(worker::nccl_obstacle(on_gpu(0), "GPU-a", 0, 2) == "ranks 0 and 2 share GPU-a");
  CHECK(worker::nccl_obstacle(on_gpu(1, Backend::kGloo), "GPU-a", std::nullopt, 1) ==
        "rank 1 has DS_COMM_BACKEND=gloo");
  CHECK(worker::nccl_obstacle(on_cpu(), "", std::nullopt, 4) == "rank 4 computes on the CPU");
  const DeviceChoice emulated{tensor::Device::emulated(), false, Backend::kAuto, ""};
  CHECK(worker::nccl_obstacle(emulated, "", std::nullopt, 0) ==
        "rank 0 computes on the emulated device");
}

TEST_CASE("gpu sharing: ranks that each see only their own GPU as cuda:0 use NCCL", "[device]") {
  // Slurm's --gpus-per-task=1: the same device number, four different GPUs.
  const auto outcomes =
      agree({on_gpu(0), on_gpu(0), on_gpu(0), on_gpu(0)}, {"GPU-0", "GPU-1", "GPU-2", "GPU-3"});
  for (const Outcome& o : outcomes) {
    CHECK(o.nccl);
    CHECK(o.why_staged.empty());
    CHECK(o.usage_error.empty());
  }
}

TEST_CASE("gpu sharing: ranks sharing a GPU make the whole run stage through host memory",
          "[device]") {
  // Four ranks on a node with two GPUs, dealt round-robin: 0 and 2 share one, 1 and 3 the other.
  const auto outcomes =
      agree({on_gpu(0), on_gpu(1), on_gpu(0), on_gpu(1)}, {"GPU-a", "GPU-b", "GPU-a", "GPU-b"});
  for (const Outcome& o : outcomes) {
    CHECK_FALSE(o.nccl);
    CHECK(o.usage_error.empty());
    // Every rank gives the same reason, whichever pair reported first.
    CHECK(o.why_staged == outcomes[0].why_staged);
  }
  CHECK_THAT(outcomes[0].why_staged, Contains(" share GPU-"));

  // Device numbers that differ cannot hide a shared GPU: rank 3 sees it as cuda:1.
  const auto hidden =
      agree({on_gpu(0), on_gpu(1), on_gpu(2), on_gpu(1)}, {"GPU-a", "GPU-b", "GPU-c", "GPU-a"});
  for (const Outcome& o : hidden) CHECK(o.why_staged == "ranks 0 and 3 share GPU-a");
}

TEST_CASE("gpu sharing: one CPU rank or a host backend stages the run", "[device]") {
  const auto cpu =
      agree({on_gpu(0), on_gpu(1), on_cpu(), on_gpu(3)}, {"GPU-a", "GPU-b", "", "GPU-d"});
  for (const Outcome& o : cpu) {
    CHECK_FALSE(o.nccl);
    CHECK(o.why_staged == "rank 2 computes on the CPU");
  }
  const DeviceChoice gloo = on_gpu(0, Backend::kGloo);
  const auto host =
      agree({gloo, gloo, gloo, gloo}, {"GPU-a", "GPU-b", "GPU-c", "GPU-d"}, Backend::kGloo);
  for (const Outcome& o : host) {
    CHECK_FALSE(o.nccl);
    CHECK_THAT(o.why_staged, Contains("has DS_COMM_BACKEND=gloo"));
  }
}

TEST_CASE("gpu sharing: DS_COMM_BACKEND=nccl on a shared GPU is refused on every rank",
          "[device]") {
  const auto outcomes = agree({on_gpu(0), on_gpu(0), on_gpu(1), on_gpu(2)},
                              {"GPU-a", "GPU-a", "GPU-b", "GPU-c"}, Backend::kNccl);
  for (const Outcome& o : outcomes) {
    CHECK_FALSE(o.nccl);
    CHECK_THAT(o.usage_error, Contains("DS_COMM_BACKEND=nccl, but ranks 0 and 1 share GPU-a"));
    CHECK_THAT(o.usage_error, Contains("refuses two ranks on one GPU"));
  }
  // With a GPU each, asking for NCCL gets it.
  const auto own = agree({on_gpu(0), on_gpu(1), on_gpu(2), on_gpu(3)},
                         {"GPU-a", "GPU-b", "GPU-c", "GPU-d"}, Backend::kNccl);
  for (const Outcome& o : own) CHECK(o.nccl);
}
