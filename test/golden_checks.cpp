#include "golden_checks.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "model/gpt.h"
#include "model/head_layer.h"
#include "optim/optimizer.h"
#include "process_helpers.h"
#include "tensor/memory.h"

using ds::checkpoint::SafetensorsFile;
using ds::tensor::Ops;

namespace golden {
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

Golden load_golden(const std::string& fixture) {
  Golden g{SafetensorsFile::load(ds::testing::kSource + "/test/golden/" + fixture + ".safetensors"),
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

// A model on ops' device with the fixture's weights and a gradient buffer there.
struct DeviceModel {
  DeviceModel(const Golden& g, Ops& ops_in) : ops(ops_in), gpt(g.model, ops_in) {
    const std::vector<float> host = load_params(g, gpt.layout());
    n = static_cast<int64_t>(host.size());
    params = ops.allocate_floats(n, ds::tensor::MemoryCategory::kParameters);
    grads = ops.allocate_floats(n, ds::tensor::MemoryCategory::kGradients);
    set_params(host);
  }
  void set_params(const std::vector<float>& host) {
    ops.upload(params.data(), host.data(), sizeof(float) * host.size());
  }
  void zero_grads() { ops.fill_zero(grads.as<float>(), n); }
  std::vector<float> fetch(const float* device, int64_t count) const {
    std::vector<float> host(static_cast<size_t>(count));
    ops.download(host.data(), device, sizeof(float) * host.size());
    return host;
  }
  double forward(const ds::model::MicroBatch& mb) { return gpt.forward(params.as<float>(), mb); }
  void backward(const ds::model::MicroBatch& mb) {
    gpt.backward(params.as<float>(), grads.as<float>(), mb);
  }

  Ops& ops;
  ds::model::Gpt gpt;
  int64_t n = 0;
  ds::tensor::Buffer params, grads;
};

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

}  // namespace

void for_each_fixture(Check check, Ops& ops) {
  for (const char* fixture : kFixtures) {
    INFO(fixture << " on " << ops.device().str());
    check(fixture, ops);
  }
}

void check_forward_backward(const std::string& fixture, Ops& ops) {
  const Golden g = load_golden(fixture);
  DeviceModel m(g, ops);
  const int N = g.B * g.T;
  ds::model::MicroBatch mb{g.inputs.data(), g.targets.data(), g.B, g.T, 1.0f / N};

  // An evaluation forward (no dloss) first: the head keeps the probabilities, which must be
  // the softmax of PyTorch's logits.
  ds::model::MicroBatch evaluation = mb;
  evaluation.dloss = 0.0f;
  const double expected = g.file.f32("loss")[0];
  const double eval_loss = m.forward(evaluation);
  INFO("evaluation loss " << eval_loss << " vs PyTorch " << expected);
  CHECK(std::fabs(eval_loss - expected) <= 1e-5 * std::fabs(expected));
  const auto& head = dynamic_cast<const ds::model::HeadLayer&>(*m.gpt.layers().back());
  const std::vector<float> logits = g.file.f32("logits");
  const int V = static_cast<int>(g.model.vocab_size);
  const std::vector<float> probs = m.fetch(head.probabilities(), int64_t{N} * V);
  double worst = 0;
  for (int n = 0; n < N; ++n) {
    const float* row = logits.data() + static_cast<size_t>(n) * V;
    const double top = *std::max_element(row, row + V);
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(row[v] - top);
    for (int v = 0; v < V; ++v) {
      const double want = std::exp(row[v] - top) / sum;
      worst = std::max(worst, std::fabs(probs[static_cast<size_t>(n) * V + v] - want));
    }
  }
  INFO("probabilities: max error " << worst);
  CHECK(worst <= 1e-6);

  // Training: the forward computes the losses and the logits' gradient in one pass.
  const double loss = m.forward(mb);
  INFO("loss " << loss << " vs PyTorch " << expected);
  CHECK(loss == eval_loss);
  CHECK(head.probabilities() == nullptr);
  m.backward(mb);
  check_gradients(g, m.gpt.layout(), m.fetch(m.grads.as<float>(), m.n), "grad.");
}

void check_masked(const std::string& fixture, Ops& ops) {
  const Golden g = load_golden(fixture);
  DeviceModel m(g, ops);
  const std::vector<int32_t> targets = g.file.i32("masked_targets");
  const int64_t counted = ds::model::count_targets(targets.data(), int64_t{g.B} * g.T);
  REQUIRE(counted < int64_t{g.B} * g.T);
  ds::model::MicroBatch mb{g.inputs.data(), targets.data(), g.B, g.T,
                           1.0f / static_cast<float>(counted)};
  const double loss = m.forward(mb);
  const double expected = g.file.f32("masked_loss")[0];
  INFO("masked loss " << loss << " vs PyTorch " << expected);
  CHECK(std::fabs(loss - expected) <= 1e-5 * std::fabs(expected));
  m.backward(mb);
  check_gradients(g, m.gpt.layout(), m.fetch(m.grads.as<float>(), m.n), "masked_grad.");
}

void check_adamw(const std::string& fixture, Ops& ops) {
  const Golden g = load_golden(fixture);
  DeviceModel m(g, ops);
  std::vector<float> params = load_params(g, m.gpt.layout());
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
    m.zero_grads();
    const double loss = m.forward(mb);
    INFO("step " << step + 1 << ": loss " << loss << " vs PyTorch " << expected[step]);
    CHECK(std::fabs(loss - expected[step]) <= 1e-4 * std::fabs(expected[step]));
    m.backward(mb);
    const std::vector<float> grads = m.fetch(m.grads.as<float>(), m.n);
    adam.step(params.data(), grads.data(), static_cast<int64_t>(params.size()), lr,
              static_cast<int64_t>(step) + 1);
    m.set_params(params);
  }
}

void check_no_allocation(const std::string& fixture, Ops& ops) {
  const Golden g = load_golden(fixture);
  DeviceModel m(g, ops);
  const int N = g.B * g.T;
  ds::model::MicroBatch mb{g.inputs.data(), g.targets.data(), g.B, g.T, 1.0f / N};
  m.forward(mb);
  m.backward(mb);
  for (ds::tensor::MemoryTracker* tracker :
       {&ds::tensor::MemoryTracker::instance(), &ds::tensor::MemoryTracker::of(ops.device())}) {
    tracker->reset_peaks();
  }
  const size_t host = ds::tensor::MemoryTracker::instance().total();
  const size_t device = ds::tensor::MemoryTracker::of(ops.device()).total();
  m.forward(mb);
  m.backward(mb);
  for (auto [tracker, before] : {std::pair{&ds::tensor::MemoryTracker::instance(), host},
                                 std::pair{&ds::tensor::MemoryTracker::of(ops.device()), device}}) {
    CHECK(tracker->total() == before);
    CHECK(tracker->peak_total() == before);
  }
}

}  // namespace golden
