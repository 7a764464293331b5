// Whether a run moves GPU buffers over NCCL, decided from the GPUs' PCI addresses on NCCL's hosts
// (worker/gpu_sharing.h): the claims on a store, the obstacles' wording, and the agreement of four
// thread ranks over Gloo for each way ranks can sit on GPUs. The identities are given, so no GPU
// is needed.
#include "worker/gpu_sharing.h"

#include <fmt/format.h>

#include <array>
#include <catch2/catch.hpp>
#include <mutex>

#include "comm/host_identity.h"
#include "comm_helpers.h"
#include "zero/process_group_comm.h"

using Catch::Matchers::Contains;
using ds::comm::Backend;
using ds::worker::DeviceChoice;
using ds::worker::GpuIdentity;
using ds::worker::GpuSharer;
namespace tensor = ds::tensor;
namespace worker = ds::worker;

namespace {

DeviceChoice on_gpu(int index, Backend backend = Backend::kNccl) {
  return {tensor::Device::cuda(index), false, backend, ""};
}

DeviceChoice on_cpu() { return {tensor::Device::cpu(), false, Backend::kAuto, ""}; }

// A whole GPU named `name` ("GPU-<name>"), alone at its own PCI address on one machine.
GpuIdentity gpu(const std::string& name) { return {"GPU-" + name, "pci-" + name, "host-1"}; }

// MIG slice `slice` of the GPU `name`: a UUID of its own at the GPU's PCI address.
GpuIdentity mig(const std::string& slice, const std::string& name) {
  return {"MIG-" + slice, "pci-" + name, "host-1"};
}

const GpuIdentity kNoGpu;

struct Outcome {
  bool nccl = false;
  std::string why_staged;
  std::string usage_error;  // the UsageError's message, when the rank refused to run
};

// Four thread ranks over Gloo, rank r on `devices[r]` with GPU `gpus[r]`, each asking for
// `asked`: what each rank decided.
std::array<Outcome, 4> agree(const std::array<DeviceChoice, 4>& devices,
                             const std::array<GpuIdentity, 4>& gpus,
                             Backend asked = Backend::kAuto) {
  std::array<Outcome, 4> outcomes;
  ds::testing::run_ranks(4, [&](int rank, std::shared_ptr<ds::comm::Store> store) {
    ds::zero::ProcessGroupComm world(ds::testing::thread_group(rank, 4, store, Backend::kGloo));
    Outcome& outcome = outcomes[static_cast<size_t>(rank)];
    try {
      const worker::GpuBufferPath path =
          worker::agree_gpu_buffer_path(devices[rank], gpus[rank], asked, *store, world);
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
  const auto sharer = [&](const GpuIdentity& gpu, int rank) {
    const std::optional<GpuSharer> found = worker::claim_gpu(store, gpu, rank);
    return found ? fmt::format("{} {}", found->rank, found->same_uuid ? "same" : "slice") : "";
  };
  CHECK(sharer(gpu("a"), 3).empty());
  CHECK(sharer(gpu("b"), 1).empty());
  CHECK(sharer(gpu("a"), 0) == "3 same");
  CHECK(sharer(gpu("a"), 2) == "3 same");
  CHECK(sharer(gpu("b"), 5) == "1 same");
  // Another slice of GPU b is at b's PCI address; the same address on another host is not b.
  CHECK(sharer(mig("b2", "b"), 6) == "1 slice");
  CHECK(sharer(GpuIdentity{"GPU-c", "pci-b", "host-2"}, 7).empty());
}

TEST_CASE("gpu sharing: each obstacle to NCCL is named with its rank", "[device]") {
  CHECK_FALSE(worker::nccl_obstacle(on_gpu(0), gpu("a"), std::nullopt, 2));
  CHECK(worker::nccl_obstacle(on_gpu(0), gpu("a"), GpuSharer{0, true}, 2) ==
        "ranks 0 and 2 share GPU-a");
  CHECK(worker::nccl_obstacle(on_gpu(0), mig("a1", "a"), GpuSharer{5, false}, 2) ==
        "ranks 2 and 5 have GPUs at one PCI address (pci-a) of what NCCL takes for one host: "
        "MIG slices of one GPU, or one NCCL_HOSTID on two machines");
  CHECK(worker::nccl_obstacle(on_gpu(1, Backend::kGloo), gpu("a"), std::nullopt, 1) ==
        "rank 1 has DS_COMM_BACKEND=gloo");
  CHECK(worker::nccl_obstacle(on_cpu(), kNoGpu, std::nullopt, 4) == "rank 4 computes on the CPU");
  const DeviceChoice emulated{tensor::Device::emulated(), false, Backend::kAuto, ""};
  CHECK(worker::nccl_obstacle(emulated, kNoGpu, std::nullopt, 0) ==
        "rank 0 computes on the emulated device");
}

TEST_CASE("gpu sharing: ranks that each see only their own GPU as cuda:0 use NCCL", "[device]") {
  // Slurm's --gpus-per-task=1: the same device number, four different GPUs.
  const auto outcomes =
      agree({on_gpu(0), on_gpu(0), on_gpu(0), on_gpu(0)}, {gpu("0"), gpu("1"), gpu("2"), gpu("3")});
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
      agree({on_gpu(0), on_gpu(1), on_gpu(0), on_gpu(1)}, {gpu("a"), gpu("b"), gpu("a"), gpu("b")});
  for (const Outcome& o : outcomes) {
    CHECK_FALSE(o.nccl);
    CHECK(o.usage_error.empty());
    // Every rank gives the same reason, whichever pair reported first.
    CHECK(o.why_staged == outcomes[0].why_staged);
  }
  CHECK_THAT(outcomes[0].why_staged, Contains(" share GPU-"));

  // Device numbers that differ cannot hide a shared GPU: rank 3 sees it as cuda:1.
  const auto hidden =
      agree({on_gpu(0), on_gpu(1), on_gpu(2), on_gpu(1)}, {gpu("a"), gpu("b"), gpu("c"), gpu("a")});
  for (const Outcome& o : hidden) CHECK(o.why_staged == "ranks 0 and 3 share GPU-a");

  // MIG: ranks 1 and 2 each have a slice of GPU b, UUIDs of their own at b's PCI address.
  const auto slices = agree({on_gpu(0), on_gpu(0), on_gpu(0), on_gpu(0)},
                            {gpu("a"), mig("b1", "b"), mig("b2", "b"), gpu("c")});
  for (const Outcome& o : slices) {
    CHECK_FALSE(o.nccl);
    CHECK_THAT(o.why_staged, Contains("ranks 1 and 2 have GPUs at one PCI address (pci-b)"));
  }
}

TEST_CASE("gpu sharing: one CPU rank or a host backend stages the run", "[device]") {
  const auto cpu =
      agree({on_gpu(0), on_gpu(1), on_cpu(), on_gpu(3)}, {gpu("a"), gpu("b"), kNoGpu, gpu("d")});
  for (const Outcome& o : cpu) {
    CHECK_FALSE(o.nccl);
    CHECK(o.why_staged == "rank 2 computes on the CPU");
  }
  const DeviceChoice gloo = on_gpu(0, Backend::kGloo);
  const auto host =
      agree({gloo, gloo, gloo, gloo}, {gpu("a"), gpu("b"), gpu("c"), gpu("d")}, Backend::kGloo);
  for (const Outcome& o : host) {
    CHECK_FALSE(o.nccl);
    CHECK_THAT(o.why_staged, Contains("has DS_COMM_BACKEND=gloo"));
  }
}

TEST_CASE("gpu sharing: DS_COMM_BACKEND=nccl on a shared GPU is refused on every rank",
          "[device]") {
  const auto outcomes = agree({on_gpu(0), on_gpu(0), on_gpu(1), on_gpu(2)},
                              {gpu("a"), gpu("a"), gpu("b"), gpu("c")}, Backend::kNccl);
  for (const Outcome& o : outcomes) {
    CHECK_FALSE(o.nccl);
    CHECK_THAT(o.usage_error, Contains("DS_COMM_BACKEND=nccl, but ranks 0 and 1 share GPU-a"));
    CHECK_THAT(o.usage_error, Contains("refuses two ranks on one GPU"));
  }
  // With a GPU each, asking for NCCL gets it.
  const auto own = agree({on_gpu(0), on_gpu(1), on_gpu(2), on_gpu(3)},
                         {gpu("a"), gpu("b"), gpu("c"), gpu("d")}, Backend::kNccl);
  for (const Outcome& o : own) CHECK(o.nccl);
}

TEST_CASE("gpu sharing: ranks on one GPU that NCCL takes for two hosts use NCCL", "[device]") {
  // Distinct NCCL_HOSTIDs: NCCL looks for a shared GPU within a host only, and runs its network
  // transport between the two.
  const GpuIdentity first{"GPU-a", "pci-a", "host-1"};
  const GpuIdentity second{"GPU-a", "pci-a", "host-2"};
  const auto outcomes = agree({on_gpu(0), on_gpu(0), on_gpu(0), on_gpu(0)},
                              {first, second, gpu("b"), gpu("c")}, Backend::kNccl);
  for (const Outcome& o : outcomes) CHECK(o.nccl);
}

TEST_CASE("gpu sharing: a host is NCCL_HOSTID or else the host name and boot id", "[device]") {
  CHECK(worker::nccl_host({{"NCCL_HOSTID", "node-7"}}) == "node-7");
  const std::string machine = worker::nccl_host({});
  CHECK_THAT(machine, Contains("|" + ds::comm::kernel_boot_id()));
  CHECK(machine.size() > ds::comm::kernel_boot_id().size() + 1);  // a host name before the '|'
}
