// The model run the way a pipeline stage runs it: layer ranges, several micro-batches
// in flight in activation slots (1F1B), and the tied LM head served without layer 0.
// Everything is compared bit for bit with whole-model runs, one micro-batch at a time.
#include <catch2/catch.hpp>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "model/layer_buffers.h"
#include "model_test_helpers.h"
#include "util/error.h"

using namespace ds;
using namespace ds::model;
using ds::model::testing::Fixture;
using ds::model::testing::sequential;

namespace {

float max_abs_diff(const float* a, const float* b, int64_t n) {
  float worst = 0;
  for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

std::vector<float> copy_of(const float* p, int64_t n) { return std::vector<float>(p, p + n); }

struct PipelineRun {
  std::vector<double> losses;
  std::vector<float> grads;
  std::vector<std::vector<float>> hidden;       // stage 0's output per micro-batch
  std::vector<std::vector<float>> input_grads;  // the last stage's input gradient
};

// Two stages, [0, a) and [a, L), in DeepSpeed's 1F1B order for two micro-batches,
// executed one instruction at a time: stage 0 runs F0 F1 B0 B1 (two slots in flight),
// the last stage F0 B0 F1 B1. `last_buffers` stands in for the last stage's engine.
PipelineRun two_stages(const Fixture& f, int a, int k, LayerBuffers* last_buffers = nullptr,
                       std::vector<float>* grads = nullptr) {
  const int L = f.num_layers();
  Gpt first(f.cfg), last(f.cfg);
  first.set_activation_checkpoint_interval(k);
  last.set_activation_checkpoint_interval(k);
  first.reserve_range(0, a, f.B, f.T, 2);
  last.reserve_range(a, L, f.B, f.T, 2);
  PipelineRun run;
  run.grads = f.zero_grads();
  float* g = grads ? grads->data() : run.grads.data();
  FlatLayerBuffers flat(first.layout(), f.params.data(), g);
  LayerBuffers& lb = last_buffers ? *last_buffers : flat;
  const int64_t hidden = int64_t{f.B} * f.T * f.cfg.n_embd;

  const float* h0 = first.forward_range(0, a, f.mb(0), nullptr, flat, 0);
  last.forward_range(a, L, f.mb(0), h0, lb, 0);
  run.losses.push_back(last.loss(0));
  const float* h1 = first.forward_range(0, a, f.mb(1), nullptr, flat, 1);
  const float* g0 = last.backward_range(a, L, f.mb(0), h0, nullptr, lb, 0);
  run.input_grads.push_back(copy_of(g0, hidden));
  CHECK(first.backward_range(0, a, f.mb(0), nullptr, g0, flat, 0) == nullptr);
  last.forward_range(a, L, f.mb(1), h1, lb, 1);
  run.losses.push_back(last.loss(1));
  const float* g1 = last.backward_range(a, L, f.mb(1), h1, nullptr, lb, 1);
  run.input_grads.push_back(copy_of(g1, hidden));
  first.backward_range(0, a, f.mb(1), nullptr, g1, flat, 1);
  run.hidden = {copy_of(h0, hidden), copy_of(h1, hidden)};
  return run;
}

// The same split on one model and one slot, each micro-batch's forward and backward
// back to back: the stage outputs and input gradients the pipeline must reproduce.
PipelineRun one_slot(const Fixture& f, int a) {
  const int L = f.num_layers();
  Gpt gpt(f.cfg);
  PipelineRun run;
  run.grads = f.zero_grads();
  FlatLayerBuffers flat(gpt.layout(), f.params.data(), run.grads.data());
  const int64_t hidden = int64_t{f.B} * f.T * f.cfg.n_embd;
  for (int m = 0; m < f.micro_batches; ++m) {
    const float* h = gpt.forward_range(0, a, f.mb(m), nullptr, flat, 0);
    run.hidden.push_back(copy_of(h, hidden));
    gpt.forward_range(a, L, f.mb(m), run.hidden.back().data(), flat, 0);
    run.losses.push_back(gpt.loss(0));
    // The input gradient is passed straight back in: Gpt must not write over it.
    const float* dx = gpt.backward_range(a, L, f.mb(m), run.hidden.back().data(), nullptr, flat, 0);
    run.input_grads.push_back(copy_of(dx, hidden));
    gpt.backward_range(0, a, f.mb(m), nullptr, dx, flat, 0);
  }
  return run;
}

// Serves layers [first, L) only; the tied head gets its own copy of wte, as on a
// pipeline's last stage, and touching layer 0 is an error.
class LastStageBuffers final : public LayerBuffers {
 public:
  LastStageBuffers(const ModelLayout& layout, int first, const float* params, float* grads,
                   const float* wte, float* dwte)
      : flat_(layout, params, grads), first_(first), wte_(wte), dwte_(dwte) {}
  const float* weights(int layer) override {
    if (layer < first_) throw std::logic_error("the last stage asked for another stage's layer");
    return flat_.weights(layer);
  }
  float* grads(int layer) override {
    if (layer < first_) throw std::logic_error("the last stage asked for another stage's layer");
    return flat_.grads(layer);
  }
  const float* tied_wte(int64_t) override { return wte_; }
  float* tied_dwte(int64_t) override { return dwte_; }

 private:
  FlatLayerBuffers flat_;
  int first_;
  const float* wte_;
  float* dwte_;
};

}  // namespace

TEST_CASE("two pipeline stages with two micro-batches in flight match sequential runs",
          "[model][pipeline]") {
  const Fixture f;
  const auto reference = sequential(f);
  for (int k : {0, 1, 2, 3}) {
    for (int a = 1; a < f.num_layers(); ++a) {
      INFO("stages [0, " << a << ") and [" << a << ", " << f.num_layers()
                         << "), checkpoint interval " << k);
      const PipelineRun want = one_slot(f, a);
      CHECK(want.losses == reference.losses);
      CHECK(want.grads == reference.grads);
      const PipelineRun got = two_stages(f, a, k);
      CHECK(got.losses == reference.losses);
      CHECK(got.hidden == want.hidden);
      CHECK(got.input_grads == want.input_grads);
      CHECK(max_abs_diff(got.grads.data(), reference.grads.data(),
                         static_cast<int64_t>(got.grads.size())) == 0.0f);
    }
  }
}

TEST_CASE("the tied head runs on a stage without the embedding layer", "[model][pipeline]") {
  const Fixture f;
  const auto reference = sequential(f);
  const int a = 2;
  const Gpt shape(f.cfg);
  const ParamSpec& wte = shape.layout().param("transformer.wte.weight");
  // The last stage's own wte and gradient, as a pipeline engine keeps them.
  std::vector<float> wte_copy(f.params.begin() + wte.offset,
                              f.params.begin() + wte.offset + wte.numel);
  std::vector<float> dwte_copy(static_cast<size_t>(wte.numel), 0.0f);
  std::vector<float> grads = f.zero_grads();
  LastStageBuffers last(shape.layout(), a, f.params.data(), grads.data(), wte_copy.data(),
                        dwte_copy.data());
  const PipelineRun got = two_stages(f, a, 0, &last, &grads);
  CHECK(got.losses == reference.losses);

  // ReduceTiedGrads: the two stages' wte gradients are summed. They add up in another
  // order than in one process, so the sum agrees to rounding, the rest bit for bit.
  float wte_magnitude = 0, wte_error = 0;
  for (int64_t i = 0; i < wte.numel; ++i) {
    const float sum = grads[wte.offset + i] + dwte_copy[i];
    wte_magnitude = std::max(wte_magnitude, std::fabs(reference.grads[wte.offset + i]));
    wte_error = std::max(wte_error, std::fabs(sum - reference.grads[wte.offset + i]));
  }
  INFO("wte gradient: max error " << wte_error << ", max magnitude " << wte_magnitude);
  CHECK(wte_magnitude > 0);
  CHECK(wte_error <= 1e-6f * wte_magnitude);
  for (int64_t i = 0; i < static_cast<int64_t>(grads.size()); ++i) {
    if (i >= wte.offset && i < wte.offset + wte.numel) continue;
    if (grads[i] != reference.grads[i]) {
      FAIL("gradient element " << i << " differs: " << grads[i] << " vs " << reference.grads[i]);
    }
  }
}

TEST_CASE("a backward through the head needs that slot's head activations", "[model][pipeline]") {
  const Fixture f;
  const int L = f.num_layers(), a = 3;
  std::vector<float> grads = f.zero_grads();
  Gpt first(f.cfg);
  first.reserve_range(0, a, f.B, f.T, 2);
  FlatLayerBuffers flat(first.layout(), f.params.data(), grads.data());
  const float* h0 = first.forward_range(0, a, f.mb(0), nullptr, flat, 0);
  const float* h1 = first.forward_range(0, a, f.mb(1), nullptr, flat, 1);

  SECTION("two forwards before the backward") {
    Gpt last(f.cfg);
    last.forward_range(a, L, f.mb(0), h0, flat, 0);
    last.forward_range(a, L, f.mb(1), h1, flat, 1);
    CHECK_THROWS_AS(last.backward_range(a, L, f.mb(0), h0, nullptr, flat, 0), ds::Error);
    CHECK_NOTHROW(last.backward_range(a, L, f.mb(1), h1, nullptr, flat, 1));
  }
  SECTION("a second backward of the same forward") {
    Gpt last(f.cfg);
    last.forward_range(a, L, f.mb(0), h0, flat, 0);
    CHECK_NOTHROW(last.backward_range(a, L, f.mb(0), h0, nullptr, flat, 0));
    CHECK_THROWS_AS(last.backward_range(a, L, f.mb(0), h0, nullptr, flat, 0), ds::Error);
  }
  SECTION("a checkpointed head recomputes its activations") {
    Gpt last(f.cfg), plain(f.cfg);
    last.set_activation_checkpoint_interval(1);
    std::vector<float> plain_grads = f.zero_grads();
    FlatLayerBuffers plain_flat(plain.layout(), f.params.data(), plain_grads.data());
    last.forward_range(a, L, f.mb(0), h0, flat, 0);
    last.forward_range(a, L, f.mb(1), h1, flat, 1);
    const std::vector<float> g0 = copy_of(last.backward_range(a, L, f.mb(0), h0, nullptr, flat, 0),
                                          int64_t{f.B} * f.T * f.cfg.n_embd);
    plain.forward_range(a, L, f.mb(0), h0, plain_flat, 0);
    const float* want = plain.backward_range(a, L, f.mb(0), h0, nullptr, plain_flat, 0);
    CHECK(max_abs_diff(g0.data(), want, static_cast<int64_t>(g0.size())) == 0.0f);
    CHECK_NOTHROW(last.backward_range(a, L, f.mb(1), h1, nullptr, flat, 1));
  }
}

TEST_CASE("layer ranges are checked", "[model][pipeline]") {
  const Fixture f;
  Gpt gpt(f.cfg);
  std::vector<float> grads = f.zero_grads();
  FlatLayerBuffers flat(gpt.layout(), f.params.data(), grads.data());
  std::vector<float> x(static_cast<size_t>(f.B) * f.T * f.cfg.n_embd, 0.0f);
  CHECK_THROWS_AS(gpt.forward_range(2, 2, f.mb(0), x.data(), flat, 0), ds::Error);
  CHECK_THROWS_AS(gpt.forward_range(0, f.num_layers() + 1, f.mb(0), nullptr, flat, 0), ds::Error);
  CHECK_THROWS_AS(gpt.forward_range(1, 3, f.mb(0), nullptr, flat, 0), ds::Error);  // no input
  CHECK_THROWS_AS(gpt.forward_range(0, 3, f.mb(0), x.data(), flat, 0), ds::Error);
  CHECK_THROWS_AS(gpt.forward_range(0, 3, f.mb(0), nullptr, flat, -1), ds::Error);
  gpt.forward_range(0, 3, f.mb(0), nullptr, flat, 0);
  CHECK_THROWS_AS(gpt.set_activation_checkpoint_interval(1), ds::Error);  // after reserve
}
