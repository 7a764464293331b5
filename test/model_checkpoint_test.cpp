// Activation checkpointing (DeepSpeed's activation_checkpoint_interval): the same
// losses and gradients bit for bit, and clearly less activation memory.
#include <catch2/catch.hpp>
#include <vector>

#include "model_test_helpers.h"
#include "tensor/memory.h"

using namespace ds;
using namespace ds::model;
using ds::model::testing::Fixture;
using ds::model::testing::sequential;
using tensor::MemoryCategory;

namespace {

// Activation bytes a model reserves for one micro-batch slot of B x T, as the memory
// tracker sees them; they must be what activation_bytes() reports.
int64_t reserved_activation_bytes(const config::ModelConfig& cfg, int k, int B, int T) {
  const size_t before = tensor::memory_bytes(MemoryCategory::kActivations);
  Gpt gpt(cfg);
  gpt.set_activation_checkpoint_interval(k);
  gpt.reserve(B, T);
  const auto tracked =
      static_cast<int64_t>(tensor::memory_bytes(MemoryCategory::kActivations) - before);
  CHECK(tracked == gpt.activation_bytes());
  return gpt.activation_bytes();
}

}  // namespace

TEST_CASE("activation checkpointing gives the same gradients with less memory",
          "[model][checkpointing]") {
  const Fixture f(12);
  const auto plain = sequential(f);
  const int64_t plain_bytes = reserved_activation_bytes(f.cfg, 0, f.B, f.T);
  for (int k : {1, 2, 3}) {
    INFO("checkpoint interval " << k);
    const auto checkpointed = sequential(f, k);
    CHECK(checkpointed.losses == plain.losses);
    CHECK(checkpointed.grads == plain.grads);
    const int64_t bytes = reserved_activation_bytes(f.cfg, k, f.B, f.T);
    INFO("12 layers x 128, B " << f.B << ", T " << f.T << ": activations " << plain_bytes
                               << " bytes without checkpointing, " << bytes << " with");
    CHECK(bytes < plain_bytes * 2 / 3);
  }
}

TEST_CASE("gpt2-124m-shaped activations shrink with checkpointing", "[model][checkpointing]") {
  config::ModelConfig cfg;
  cfg.n_layer = 12;
  cfg.n_head = 12;
  cfg.n_embd = 768;
  cfg.vocab_size = 50257;
  cfg.block_size = 1024;
  const int B = 1, T = 128;
  const int64_t plain = reserved_activation_bytes(cfg, 0, B, T);
  for (int k : {1, 2}) {
    const int64_t bytes = reserved_activation_bytes(cfg, k, B, T);
    INFO("gpt2-124m shape, B=" << B << " T=" << T << ", k=" << k << ": " << bytes
                               << " activation bytes vs " << plain << " without checkpointing");
    CHECK(bytes < plain);
  }
}

TEST_CASE("a checkpointed step allocates nothing after reserve", "[model][checkpointing]") {
  const Fixture f(12);
  Gpt gpt(f.cfg);
  gpt.set_activation_checkpoint_interval(2);
  gpt.reserve(f.B, f.T);
  std::vector<float> grads = f.zero_grads();
  const size_t before = tensor::memory_total();
  tensor::MemoryTracker::instance().reset_peaks();
  for (int m = 0; m < f.micro_batches; ++m) {
    gpt.forward(f.params.data(), f.mb(m));
    gpt.backward(f.params.data(), grads.data(), f.mb(m));
  }
  CHECK(tensor::memory_total() == before);
  CHECK(tensor::MemoryTracker::instance().peak_total() == before);
}
