// The CPU models against PyTorch: test/golden/{gpt,llama}_small.safetensors hold weights, a
// batch, and PyTorch's logits, loss, gradients and 10 AdamW losses for them
// (scripts/make_golden.py; the Llama has grouped-query attention, an untied head and
// Llama 3's rope_scaling). Tolerances are the issue's: loss within 1e-5 relative,
// each gradient within 1e-4 of its tensor's largest magnitude, AdamW losses within 1e-4.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "model/gpt.h"
#include "model/head_layer.h"
#include "optim/optimizer.h"
#include "tensor/memory.h"

using ds::checkpoint::SafetensorsFile;

namespace {

struct Golden {
  SafetensorsFile file;
  ds::config::ModelConfig model;
  int B = 0, T = 0;
  std::vector<int32_t> inputs, targets;
};

int meta_int(const SafetensorsFile& f, const char* key) { return std::stoi(f.metadata().at(key)); }

double meta_double(const SafetensorsFile& f, const std::string& key) {
  return std::stod(f.metadata().at(key));
}

const char* const kFixtures[] = {"gpt_small", "llama_small"};

Golden load_golden(const std::string& fixture) {
  Golden g{SafetensorsFile::load(std::string(DS_SOURCE_DIR) + "/test/golden/" + fixture +
                                 ".safetensors"),
           {},
           0,
           0,
           {},
           {}};
  const SafetensorsFile& f = g.file;
  if (f.metadata().at("arch") == "llama") {
    g.model.arch = "llama";
    g.model.n_kv_head = meta_int(f, "n_kv_head");
    g.model.intermediate_size = meta_int(f, "intermediate_size");
    g.model.layer_norm_epsilon = meta_double(f, "rms_norm_eps");
    g.model.rope_theta = meta_double(f, "rope_theta");
    if (f.metadata().count("rope_scaling.factor")) {
      ds::config::RopeScaling r;
      r.factor = meta_double(f, "rope_scaling.factor");
      r.low_freq_factor = meta_double(f, "rope_scaling.low_freq_factor");
      r.high_freq_factor = meta_double(f, "rope_scaling.high_freq_factor");
      r.original_max_position_embeddings =
          meta_int(f, "rope_scaling.original_max_position_embeddings");
      g.model.rope_scaling = r;
    }
  }
  g.model.n_layer = meta_int(f, "n_layer");
  g.model.n_head = meta_int(f, "n_head");
  g.model.n_embd = meta_int(f, "n_embd");
  g.model.vocab_size = meta_int(f, "vocab_size");
  g.model.block_size = meta_int(f, "block_size");
  g.model.tie_embeddings = f.metadata().at("tie_embeddings") == "true";
  g.B = meta_int(f, "batch_size");
  g.T = meta_int(f, "seq_len");
  g.inputs = f.i32("inputs");
  g.targets = f.i32("targets");
  return g;
}

std::vector<float> load_params(const Golden& g, const ds::model::ModelLayout& layout) {
  std::vector<float> flat(layout.total, 0.0f);
  for (const auto& p : layout.params) {
    const std::vector<float> values = g.file.f32("param." + p.name);
    REQUIRE(static_cast<int64_t>(values.size()) == p.numel);
    std::copy(values.begin(), values.end(), flat.begin() + p.offset);
  }
  return flat;
}

void check_forward_backward(const Golden& g);
void check_adamw(const Golden& g);
void check_masked(const Golden& g);
void check_no_allocation(const Golden& g);

}  // namespace

TEST_CASE("forward and backward match PyTorch", "[golden]") {
  for (const char* fixture : kFixtures) {
    INFO(fixture);
    check_forward_backward(load_golden(fixture));
  }
}

TEST_CASE("ignored targets are left out of the loss as PyTorch leaves them", "[golden]") {
  for (const char* fixture : kFixtures) {
    INFO(fixture);
    check_masked(load_golden(fixture));
  }
}

TEST_CASE("ten AdamW steps follow PyTorch's losses", "[golden]") {
  for (const char* fixture : kFixtures) {
    INFO(fixture);
    check_adamw(load_golden(fixture));
  }
}

TEST_CASE("a training step allocates nothing after the first", "[golden]") {
  for (const char* fixture : kFixtures) {
    INFO(fixture);
    check_no_allocation(load_golden(fixture));
  }
}

namespace {

// Each parameter's gradient within 1e-4 of its PyTorch tensor's largest magnitude.
void check_gradients(const Golden& g, const ds::model::ModelLayout& layout,
                     const std::vector<float>& grads, const std::string& prefix) {
  for (const auto& p : layout.params) {
    const std::vector<float> want = g.file.f32(prefix + p.name);
    float max_magnitude = 0, max_error = 0;
    for (int64_t i = 0; i < p.numel; ++i) {
      max_magnitude = std::max(max_magnitude, std::fabs(want[i]));
      max_error = std::max(max_error, std::fabs(grads[p.offset + i] - want[i]));
    }
    INFO(p.name << ": max error " << max_error << ", max magnitude " << max_magnitude);
    CHECK(max_error <= 1e-4f * max_magnitude);
  }
}

void check_forward_backward(const Golden& g) {
  ds::model::Gpt gpt(g.model);
  std::vector<float> params = load_params(g, gpt.layout());
  std::vector<float> grads(params.size(), 0.0f);
  const int N = g.B * g.T;
  ds::model::MicroBatch mb{g.inputs.data(), g.targets.data(), g.B, g.T, 1.0f / N};

  const double loss = gpt.forward(params.data(), mb);
  const double expected = g.file.f32("loss")[0];
  INFO("loss " << loss << " vs PyTorch " << expected);
  CHECK(std::fabs(loss - expected) <= 1e-5 * std::fabs(expected));

  // The logits, through the probabilities the head keeps: softmax of PyTorch's logits.
  const auto& head = dynamic_cast<const ds::model::HeadLayer&>(*gpt.layers().back());
  const std::vector<float> logits = g.file.f32("logits");
  const int V = static_cast<int>(g.model.vocab_size);
  double worst = 0;
  for (int n = 0; n < N; ++n) {
    const float* row = logits.data() + static_cast<size_t>(n) * V;
    const double top = *std::max_element(row, row + V);
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(row[v] - top);
    for (int v = 0; v < V; ++v) {
      const double want = std::exp(row[v] - top) / sum;
      worst =
          std::max(worst, std::fabs(head.probabilities()[static_cast<size_t>(n) * V + v] - want));
    }
  }
  INFO("probabilities: max error " << worst);
  CHECK(worst <= 1e-6);

  gpt.backward(params.data(), grads.data(), mb);
  check_gradients(g, gpt.layout(), grads, "grad.");
}

// Every third target ignored: the loss is the mean over the others, ignored positions
// give no gradient (PyTorch's cross_entropy with ignore_index -100).
void check_masked(const Golden& g) {
  ds::model::Gpt gpt(g.model);
  std::vector<float> params = load_params(g, gpt.layout());
  std::vector<float> grads(params.size(), 0.0f);
  const std::vector<int32_t> targets = g.file.i32("masked_targets");
  const int64_t counted = ds::model::count_targets(targets.data(), int64_t{g.B} * g.T);
  REQUIRE(counted < int64_t{g.B} * g.T);
  ds::model::MicroBatch mb{g.inputs.data(), targets.data(), g.B, g.T,
                           1.0f / static_cast<float>(counted)};
  const double loss = gpt.forward(params.data(), mb);
  const double expected = g.file.f32("masked_loss")[0];
  INFO("masked loss " << loss << " vs PyTorch " << expected);
  CHECK(std::fabs(loss - expected) <= 1e-5 * std::fabs(expected));
  gpt.backward(params.data(), grads.data(), mb);
  check_gradients(g, gpt.layout(), grads, "masked_grad.");
}

void check_adamw(const Golden& g) {
  ds::model::Gpt gpt(g.model);
  std::vector<float> params = load_params(g, gpt.layout());
  std::vector<float> grads(params.size(), 0.0f);
  const auto& meta = g.file.metadata();
  ds::optim::AdamOptions options;
  options.beta1 = std::stod(meta.at("beta1"));
  options.beta2 = std::stod(meta.at("beta2"));
  options.eps = std::stod(meta.at("eps"));
  options.weight_decay = std::stod(meta.at("weight_decay"));
  options.decoupled_weight_decay = true;
  ds::optim::Adam adam(static_cast<int64_t>(params.size()), options);
  const double lr = std::stod(meta.at("lr"));
  const std::vector<float> expected = g.file.f32("adamw_losses");
  const int N = g.B * g.T;
  ds::model::MicroBatch mb{g.inputs.data(), g.targets.data(), g.B, g.T, 1.0f / N};
  for (size_t step = 0; step < expected.size(); ++step) {
    std::fill(grads.begin(), grads.end(), 0.0f);
    const double loss = gpt.forward(params.data(), mb);
    INFO("step " << step + 1 << ": loss " << loss << " vs PyTorch " << expected[step]);
    CHECK(std::fabs(loss - expected[step]) <= 1e-4 * std::fabs(expected[step]));
    gpt.backward(params.data(), grads.data(), mb);
    adam.step(params.data(), grads.data(), static_cast<int64_t>(params.size()), lr,
              static_cast<int64_t>(step) + 1);
  }
}

void check_no_allocation(const Golden& g) {
  ds::model::Gpt gpt(g.model);
  std::vector<float> params = load_params(g, gpt.layout());
  std::vector<float> grads(params.size(), 0.0f);
  const int N = g.B * g.T;
  ds::model::MicroBatch mb{g.inputs.data(), g.targets.data(), g.B, g.T, 1.0f / N};
  gpt.forward(params.data(), mb);
  gpt.backward(params.data(), grads.data(), mb);
  const size_t after_first = ds::tensor::memory_total();
  ds::tensor::MemoryTracker::instance().reset_peaks();
  gpt.forward(params.data(), mb);
  gpt.backward(params.data(), grads.data(), mb);
  CHECK(ds::tensor::memory_total() == after_first);
  CHECK(ds::tensor::MemoryTracker::instance().peak_total() == after_first);
}

}  // namespace
