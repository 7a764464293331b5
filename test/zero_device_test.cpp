// The ZeRO engine's device paths, run on the emulated device (host memory treated as a GPU's:
// tensor/device.h) so that they are checked without a GPU: states on the device with their
// casts, norms and updates through the device's Ops; collectives staged through host memory
// (DeviceStagedComm); host copies of device states for checkpoints; and the host states of
// ZeRO-Offload served to a model on the device (DeviceLayerBuffers). The emulated device runs
// the CPU's kernels, so the numbers must be the CPU engine's: bit for bit where the same
// kernels run in the same order, and within 1e-6 where DeviceLayerBuffers adds each
// micro-batch's gradient instead of accumulating in place.
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine_run_helpers.h"
#include "tensor/memory.h"
#include "zero/device_comm.h"
#include "zero/engine.h"

using namespace ds;
using ds::testing::EngineRun;
using ds::testing::make_config;

namespace {

void check_same(const std::vector<zero::StepStats>& got, const std::vector<zero::StepStats>& want,
                double tolerance) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("step " << i + 1);
    if (tolerance == 0) {
      CHECK(got[i].loss == want[i].loss);
      CHECK(got[i].grad_norm == want[i].grad_norm);
    } else {
      CHECK(got[i].loss == Approx(want[i].loss).epsilon(tolerance));
      CHECK(got[i].grad_norm == Approx(want[i].grad_norm).epsilon(tolerance));
    }
  }
}

// Every own state element, flattened in segment order.
std::vector<float> saved_state(zero::Engine& engine) {
  std::vector<float> out;
  for (const zero::StateSegment& s : engine.state_segments()) {
    out.insert(out.end(), s.master, s.master + s.length);
    for (const auto& [name, values] : s.optimizer) out.insert(out.end(), values, values + s.length);
  }
  return out;
}

// A FullState from a rank's segments (one rank holds everything).
zero::FullState full_state(zero::Engine& engine) {
  zero::FullState state;
  const model::ModelLayout& layout = engine.layout();
  for (const model::ParamSpec& p : layout.params) {
    state[p.name]["master"].assign(static_cast<size_t>(p.numel), 0.0f);
  }
  for (const zero::StateSegment& s : engine.state_segments()) {
    auto& param = state[s.param];
    std::memcpy(param["master"].data() + s.begin, s.master, sizeof(float) * s.length);
    for (const auto& [name, values] : s.optimizer) {
      auto& array = param[name];
      array.resize(param["master"].size());
      std::memcpy(array.data() + s.begin, values, sizeof(float) * s.length);
    }
  }
  return state;
}

}  // namespace

TEST_CASE("with its states on a device the engine trains the CPU's numbers", "[zero][device]") {
  for (const std::string precision : {"", "bf16: {enabled: true},"}) {
    for (int stage : {0, 1, 2, 3}) {
      INFO("stage " << stage << (precision.empty() ? " fp32" : " bf16"));
      const auto cfg = make_config(stage, precision);
      EngineRun cpu(cfg, tensor::Device::cpu());
      EngineRun device(cfg, tensor::Device::emulated());
      check_same(device.train(0, 5), cpu.train(0, 5), 0);
      CHECK(device.engine->full_parameters() == cpu.engine->full_parameters());
      // The states are device memory, not host memory.
      const zero::MemoryReport report = device.engine->memory_report();
      CHECK(tensor::MemoryTracker::device_instance().bytes(tensor::MemoryCategory::kParameters) >=
            static_cast<size_t>(report.params_bytes));
      CHECK(report.model_states_bytes() == cpu.engine->memory_report().model_states_bytes());
    }
  }
  CHECK(tensor::MemoryTracker::device_instance().total() == 0);
}

TEST_CASE("a step after the first allocates nothing on the device or the host", "[zero][device]") {
  using tensor::MemoryTracker;
  for (const std::string precision : {"", "bf16: {enabled: true},"}) {
    for (const std::string zero :
         {"", ", overlap_comm: true", ", offload_optimizer: {device: cpu}"}) {
      for (int stage : {0, 1, 2, 3}) {
        if (stage == 0 && !zero.empty()) continue;  // overlap and offload are ZeRO 1-3 knobs
        INFO("stage " << stage << (precision.empty() ? " fp32" : " bf16") << zero);
        EngineRun device(make_config(stage, precision, zero), tensor::Device::emulated());
        device.train(0, 1);
        const size_t on_device = MemoryTracker::device_instance().allocations();
        const size_t on_host = MemoryTracker::instance().allocations();
        device.train(1, 3);
        CHECK(MemoryTracker::device_instance().allocations() == on_device);
        CHECK(MemoryTracker::instance().allocations() == on_host);
      }
    }
  }
}

TEST_CASE("device states go out to checkpoints and come back", "[zero][device]") {
  for (int stage : {0, 3}) {
    INFO("stage " << stage);
    const auto cfg = make_config(stage, "bf16: {enabled: true},");
    EngineRun cpu(cfg, tensor::Device::cpu());
    EngineRun device(cfg, tensor::Device::emulated());
    cpu.train(0, 3);
    device.train(0, 3);
    CHECK(saved_state(*device.engine) == saved_state(*cpu.engine));

    // A fresh device engine loads the state and continues as the CPU engine does.
    EngineRun resumed(cfg, tensor::Device::emulated());
    resumed.engine->load_state(full_state(*device.engine), device.engine->applied_steps(),
                               device.engine->loss_scaler().state());
    check_same(resumed.train(3, 3), cpu.train(3, 3), 0);
  }
}

TEST_CASE("ZeRO-Offload keeps the states on the host and serves the model on the device",
          "[zero][device]") {
  for (int stage : {2, 3}) {
    INFO("stage " << stage);
    const std::string params = stage == 3 ? ", offload_param: {device: cpu}" : "";
    const auto cfg =
        make_config(stage, "bf16: {enabled: true},", ", offload_optimizer: {device: cpu}" + params);
    const size_t host_before =
        tensor::MemoryTracker::instance().bytes(tensor::MemoryCategory::kOptimizerState);
    EngineRun cpu(cfg, tensor::Device::cpu());
    const size_t host_cpu_run =
        tensor::MemoryTracker::instance().bytes(tensor::MemoryCategory::kOptimizerState) -
        host_before;
    EngineRun device(cfg, tensor::Device::emulated());
    // The device run's optimizer states are in host memory too.
    CHECK(tensor::MemoryTracker::instance().bytes(tensor::MemoryCategory::kOptimizerState) -
              host_before ==
          2 * host_cpu_run);
    check_same(device.train(0, 5), cpu.train(0, 5), 1e-6);
  }
}

namespace {

// Two ranks that hold the same data: a sum doubles it, a gather repeats the piece, a
// reduce-scatter hands back this rank's block doubled. Host memory only.
class TwinComm final : public zero::DpComm {
 public:
  int rank() const override { return 1; }
  int size() const override { return 2; }
  void allreduce(void* data, tensor::DType, int64_t n, zero::Reduction) override {
    for (int64_t i = 0; i < n; ++i) static_cast<float*>(data)[i] *= 2;
  }
  std::unique_ptr<zero::PendingOp> reduce_scatter(const void* full, void* out, tensor::DType,
                                                  int64_t piece, zero::Reduction,
                                                  zero::Mode) override {
    for (int64_t i = 0; i < piece; ++i) {
      static_cast<float*>(out)[i] = 2 * static_cast<const float*>(full)[piece + i];
    }
    return zero::finished_op();
  }
  std::unique_ptr<zero::PendingOp> allgather(const void* piece, void* out, tensor::DType, int64_t n,
                                             zero::Mode) override {
    for (int r = 0; r < 2; ++r) std::memcpy(static_cast<float*>(out) + r * n, piece, 4 * n);
    return zero::finished_op();
  }
  double allreduce_sum(double v) override { return 2 * v; }
  bool allreduce_any(bool v) override { return v; }
};

}  // namespace

TEST_CASE("collectives on device buffers are staged through host memory", "[zero][device]") {
  auto ops = tensor::make_ops(tensor::Device::emulated());
  TwinComm twins;
  zero::DeviceStagedComm comm(twins, *ops);
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  tensor::Buffer data = ops->allocate_floats(6, tensor::MemoryCategory::kOther);
  tensor::Buffer out = ops->allocate_floats(6, tensor::MemoryCategory::kOther);
  const auto device_values = [&](const tensor::Buffer& b, int n) {
    std::vector<float> host(static_cast<size_t>(n));
    ops->download(host.data(), b.data(), sizeof(float) * host.size());
    return host;
  };
  ops->upload(data.data(), values.data(), sizeof(float) * 6);
  comm.allreduce(data.data(), tensor::DType::kF32, 6, zero::Reduction::kSum);
  CHECK(device_values(data, 6) == std::vector<float>{2, 4, 6, 8, 10, 12});

  comm.reduce_scatter(data.data(), out.data(), tensor::DType::kF32, 3, zero::Reduction::kSum,
                      zero::Mode::kAsync)
      ->wait();
  CHECK(device_values(out, 3) == std::vector<float>{16, 20, 24});

  comm.allgather(out.data(), data.data(), tensor::DType::kF32, 3, zero::Mode::kBlocking)->wait();
  CHECK(device_values(data, 6) == std::vector<float>{16, 20, 24, 16, 20, 24});
  CHECK(comm.allreduce_sum(1.5) == 3.0);
}

TEST_CASE("ops on the emulated device refuse host pointers, as a GPU would fault on them",
          "[zero][device]") {
  auto ops = tensor::make_ops(tensor::Device::emulated());
  std::vector<float> host(8, 1.0f);
  tensor::Buffer device = ops->allocate_floats(8, tensor::MemoryCategory::kOther);
  ops->fill_zero(device.as<float>(), 8);
  ops->upload(device.data(), host.data(), sizeof(float) * 8);  // host side of a copy: fine
  CHECK_THROWS_WITH(ops->fill_zero(host.data(), 8),
                    Catch::Contains("fill_zero on the emulated device was given"));
  CHECK_THROWS_WITH(ops->add_inplace(device.as<float>(), host.data(), 8),
                    Catch::Contains("not device memory"));
  // The CPU's own ops take any pointer.
  tensor::cpu_ops().fill_zero(host.data(), 8);
}
