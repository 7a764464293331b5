// Which device and backend a rank gets (torchrun/DeepSpeed semantics): every rule through the
// pure choose_device, plus the live query, which must hold with or without a GPU.
#include "worker/device_choice.h"

#include <catch2/catch.hpp>

using Catch::Matchers::Contains;
using ds::comm::Backend;
using ds::config::Device;
using ds::worker::choose_device;
using ds::worker::DeviceChoice;
using ds::worker::DeviceRequest;
namespace tensor = ds::tensor;

namespace {

DeviceRequest request(Device device, int local_rank, int local_world_size, int gpus) {
  DeviceRequest r;
  r.device = device;
  r.local_rank = local_rank;
  r.local_world_size = local_world_size;
  r.visible_devices = gpus;
  if (gpus == 0) r.no_device_reason = "no CUDA-capable device is detected";
  return r;
}

// The UsageError's message and hint, for checks on both.
std::pair<std::string, std::string> usage_error(const DeviceRequest& r) {
  try {
    choose_device(r);
  } catch (const ds::UsageError& e) {
    CHECK(e.code() == ds::ExitCode::kUsage);
    CHECK_FALSE(e.hint().empty());
    return {e.what(), e.hint()};
  }
  FAIL("accepted");
  return {};
}

}  // namespace

TEST_CASE("device: cpu computes on the CPU whatever GPUs there are", "[device]") {
  for (int gpus : {0, 1, 8}) {
    const DeviceChoice c = choose_device(request(Device::kCpu, 1, 2, gpus));
    CHECK(c.device == tensor::Device::cpu());
    CHECK_FALSE(c.round_robin);
    CHECK(c.backend == Backend::kAuto);  // the factory picks shm or Gloo
    CHECK(c.summary == "cpu (train.device: cpu)");
  }
}

TEST_CASE("device: auto with no GPU is the CPU, and the log says why", "[device]") {
  DeviceRequest r = request(Device::kAuto, 0, 1, 0);
  DeviceChoice c = choose_device(r);
  CHECK(c.device == tensor::Device::cpu());
  CHECK(c.backend == Backend::kAuto);
  CHECK(c.summary ==
        "cpu (train.device: auto, no CUDA device: no CUDA-capable device is detected)");

  r.cuda_visible_devices = "";
  c = choose_device(r);
  CHECK_THAT(c.summary, Contains("CUDA_VISIBLE_DEVICES=\"\""));
}

TEST_CASE("device: auto with GPUs takes GPU LOCAL_RANK over NCCL", "[device]") {
  DeviceRequest r = request(Device::kAuto, 1, 2, 2);
  r.cuda_visible_devices = "2,3";
  const DeviceChoice c = choose_device(r);
  CHECK(c.device == tensor::Device::cuda(1));
  CHECK_FALSE(c.round_robin);
  CHECK(c.backend == Backend::kNccl);
  CHECK(c.summary == "cuda:1 (LOCAL_RANK 1 of 2, CUDA_VISIBLE_DEVICES=2,3)");
}

TEST_CASE("device: 8 ranks on 8 GPUs, one each", "[device]") {
  for (Device device : {Device::kAuto, Device::kCuda}) {
    for (int rank = 0; rank < 8; ++rank) {
      const DeviceChoice c = choose_device(request(device, rank, 8, 8));
      CHECK(c.device == tensor::Device::cuda(rank));
      CHECK_FALSE(c.round_robin);
      CHECK(c.backend == Backend::kNccl);
    }
  }
}

TEST_CASE("device: fewer ranks than GPUs leave the rest idle", "[device]") {
  const DeviceChoice c = choose_device(request(Device::kCuda, 1, 2, 8));
  CHECK(c.device == tensor::Device::cuda(1));
  CHECK_FALSE(c.round_robin);
  CHECK(c.backend == Backend::kNccl);
}

TEST_CASE("device: 4 ranks on 2 GPUs are dealt them round-robin", "[device]") {
  // Whether they share the GPUs or each sees its own is for the GPUs' UUIDs to say
  // (gpu_sharing_test): NCCL stays the proposal until then.
  const int expected[] = {0, 1, 0, 1};
  for (int rank = 0; rank < 4; ++rank) {
    const DeviceChoice c = choose_device(request(Device::kCuda, rank, 4, 2));
    CHECK(c.device == tensor::Device::cuda(expected[rank]));
    CHECK(c.round_robin);
    CHECK(c.backend == Backend::kNccl);
    CHECK_THAT(c.summary, Contains("LOCAL_RANK " + std::to_string(rank) + " of 4"));
  }
  // Uneven: 3 ranks on 2 GPUs.
  const DeviceChoice third = choose_device(request(Device::kAuto, 2, 3, 2));
  CHECK(third.device == tensor::Device::cuda(0));
  CHECK(third.summary == "cuda:0 (LOCAL_RANK 2 of 3, 2 GPUs visible: dealt round-robin)");
  // Slurm's --gpus-per-task=1: each of 8 ranks sees only its own GPU, as cuda:0.
  DeviceRequest bound = request(Device::kAuto, 5, 8, 1);
  bound.cuda_visible_devices = "0";
  const DeviceChoice own = choose_device(bound);
  CHECK(own.device == tensor::Device::cuda(0));
  CHECK(own.backend == Backend::kNccl);
  CHECK(own.summary ==
        "cuda:0 (LOCAL_RANK 5 of 8, CUDA_VISIBLE_DEVICES=0, 1 GPU visible: dealt round-robin)");
}

TEST_CASE("device: cuda with no visible GPU is a usage error that says what to do", "[device]") {
  DeviceRequest r = request(Device::kCuda, 0, 1, 0);
  auto [what, hint] = usage_error(r);
  CHECK_THAT(what, Contains("train.device: cuda"));
  CHECK_THAT(what, Contains("no CUDA device is visible"));
  CHECK_THAT(what, Contains("no CUDA-capable device is detected"));
  CHECK_THAT(hint, Contains("train.device: auto or cpu"));

  r.cuda_visible_devices = "";
  r.no_device_reason = "CUDA driver version is insufficient for CUDA runtime version";
  std::tie(what, hint) = usage_error(r);
  CHECK_THAT(what, Contains("CUDA_VISIBLE_DEVICES=\"\""));
  CHECK_THAT(what, Contains("CUDA driver version is insufficient"));

  r.cuda_visible_devices.emplace("5");  // not "= \"5\"": GCC 12 -O3 misfires -Wrestrict on it
  CHECK_THAT(usage_error(r).first, Contains("CUDA_VISIBLE_DEVICES=5"));

  r.no_device_reason.clear();  // a runtime that gives no reason still gets a readable message
  CHECK_THAT(usage_error(r).first, Contains("the CUDA runtime reports none"));
}

TEST_CASE("device: an explicit backend is honoured where it can work", "[device]") {
  for (Backend asked : {Backend::kGloo, Backend::kShm}) {
    DeviceRequest r = request(Device::kCuda, 1, 2, 2);
    r.backend = asked;
    const DeviceChoice one_each = choose_device(r);
    CHECK(one_each.device == tensor::Device::cuda(1));
    CHECK(one_each.backend == asked);

    r.local_world_size = 4;
    const DeviceChoice dealt = choose_device(r);
    CHECK(dealt.round_robin);
    CHECK(dealt.backend == asked);

    r.device = Device::kCpu;
    CHECK(choose_device(r).backend == asked);
  }
  DeviceRequest r = request(Device::kAuto, 0, 2, 2);
  r.backend = Backend::kNccl;
  CHECK(choose_device(r).backend == Backend::kNccl);
}

TEST_CASE("device: nccl with more ranks than GPUs waits for the UUIDs", "[device]") {
  // Ranks bound to a GPU each (Slurm) can use NCCL; gpu_sharing refuses it for shared ones.
  DeviceRequest r = request(Device::kCuda, 3, 4, 2);
  r.backend = Backend::kNccl;
  const DeviceChoice c = choose_device(r);
  CHECK(c.device == tensor::Device::cuda(1));
  CHECK(c.round_robin);
  CHECK(c.backend == Backend::kNccl);
}

TEST_CASE("device: nccl on a CPU rank is a usage error", "[device]") {
  DeviceRequest r = request(Device::kCpu, 0, 1, 1);
  r.backend = Backend::kNccl;
  CHECK_THAT(usage_error(r).first, Contains("this rank computes on the CPU (train.device: cpu)"));

  r = request(Device::kAuto, 0, 1, 0);
  r.backend = Backend::kNccl;
  CHECK_THAT(usage_error(r).first, Contains("no CUDA device: no CUDA-capable device is detected"));
}

TEST_CASE("device: a LOCAL_RANK out of range is a usage error", "[device]") {
  for (Device device : {Device::kCpu, Device::kAuto, Device::kCuda}) {
    CHECK_THAT(usage_error(request(device, 2, 2, 2)).first,
               Contains("LOCAL_RANK 2 is outside [0, 2)"));
    CHECK_THAT(usage_error(request(device, -1, 2, 2)).first,
               Contains("LOCAL_RANK -1 is outside [0, 2)"));
    CHECK_THAT(usage_error(request(device, 0, 0, 2)).first, Contains("LOCAL_WORLD_SIZE is 0"));
  }
}

TEST_CASE("device: the live query holds with or without a GPU", "[device]") {
  const ds::worker::VisibleDevices visible = ds::worker::query_visible_devices();
  INFO(visible.count << " visible, reason: " << visible.reason);
  CHECK(visible.count >= 0);
  // A reason exactly when there is nothing to use, so the messages above never quote "".
  CHECK(visible.reason.empty() == (visible.count > 0));
  // And the decision accepts whatever the runtime said.
  DeviceRequest r = request(Device::kAuto, 0, 1, visible.count);
  r.no_device_reason = visible.reason;
  const DeviceChoice c = choose_device(r);
  CHECK(c.device.is_cpu() == (visible.count == 0));
}
