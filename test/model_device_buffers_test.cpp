// DeviceLayerBuffers (the model on a device, its states in host memory) checked on the CPU's
// ops: the host side must see the calls a model on the CPU makes, in the same order, and the
// gradients must come out the same (to rounding: the device computes each micro-batch's
// gradient from zero and then adds it, where the CPU accumulates in place).
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "model/device_layer_buffers.h"
#include "model/layer_buffers.h"
#include "model_test_helpers.h"

using namespace ds::model;
using ds::model::testing::Fixture;

namespace {

// Flat buffers that write down every call the model makes.
class RecordingBuffers final : public LayerBuffers {
 public:
  RecordingBuffers(const ModelLayout& layout, const float* params, float* grads)
      : flat_(layout, params, grads) {}
  const float* weights(int layer) override {
    calls.push_back("weights " + std::to_string(layer));
    return flat_.weights(layer);
  }
  float* grads(int layer) override {
    calls.push_back("grads " + std::to_string(layer));
    return flat_.grads(layer);
  }
  void forward_done(int layer) override {
    calls.push_back("forward_done " + std::to_string(layer));
  }
  void backward_done(int layer) override {
    calls.push_back("backward_done " + std::to_string(layer));
  }
  const float* tied_wte(int64_t offset) override {
    calls.push_back("tied_wte");
    return flat_.tied_wte(offset);
  }
  float* tied_dwte(int64_t offset) override {
    calls.push_back("tied_dwte");
    return flat_.tied_dwte(offset);
  }

  std::vector<std::string> calls;

 private:
  FlatLayerBuffers flat_;
};

struct Run {
  std::vector<double> losses;
  std::vector<float> grads;
  std::vector<std::string> calls;
};

Run run(const Fixture& f, bool through_device_buffers, int checkpoint_interval) {
  Gpt gpt(f.cfg);
  gpt.set_activation_checkpoint_interval(checkpoint_interval);
  Run r{{}, f.zero_grads(), {}};
  RecordingBuffers host(gpt.layout(), f.params.data(), r.grads.data());
  DeviceLayerBuffers device(gpt.layout(), gpt.ops(), host);
  LayerBuffers& buffers = through_device_buffers ? static_cast<LayerBuffers&>(device) : host;
  for (int m = 0; m < f.micro_batches; ++m) {
    r.losses.push_back(gpt.forward(f.mb(m), buffers));
    gpt.backward(f.mb(m), buffers);
  }
  r.calls = host.calls;
  return r;
}

void check_same(const Fixture& f, int checkpoint_interval) {
  const Run direct = run(f, false, checkpoint_interval);
  const Run served = run(f, true, checkpoint_interval);
  CHECK(served.calls == direct.calls);
  REQUIRE(served.losses.size() == direct.losses.size());
  for (size_t m = 0; m < direct.losses.size(); ++m) CHECK(served.losses[m] == direct.losses[m]);
  float largest = 0, worst = 0;
  for (size_t i = 0; i < direct.grads.size(); ++i) {
    largest = std::max(largest, std::fabs(direct.grads[i]));
    worst = std::max(worst, std::fabs(served.grads[i] - direct.grads[i]));
  }
  INFO("max gradient difference " << worst << " of max magnitude " << largest);
  CHECK(worst <= 1e-6f * largest);
}

}  // namespace

TEST_CASE("a model served through device buffers sees the CPU's calls and gradients", "[model]") {
  SECTION("GPT-2 with the tied head") { check_same(Fixture(3), 0); }
  SECTION("with activation checkpointing") { check_same(Fixture(3), 2); }
  SECTION("Llama with an untied head and grouped-query attention") {
    Fixture f(2);
    f.cfg.arch = "llama";
    f.cfg.n_kv_head = 2;
    f.cfg.tie_embeddings = false;
    const Gpt shape(f.cfg);
    f.params.assign(static_cast<size_t>(shape.layout().total), 0.0f);
    init_weights(shape.layout(), f.cfg, 7, f.params.data());
    check_same(f, 0);
  }
}
