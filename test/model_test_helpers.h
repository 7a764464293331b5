// A small GPT with initialised weights and deterministic micro-batches, and the
// reference every model test compares against: whole-model forward/backward, one
// micro-batch after the other.
#pragma once

#include <cstdint>
#include <vector>

#include "config/model_config.h"
#include "model/gpt.h"
#include "model/init.h"

namespace ds::model::testing {

struct Fixture {
  config::ModelConfig cfg;
  int B = 2, T = 32, micro_batches = 2;
  std::vector<float> params;
  std::vector<std::vector<int32_t>> tokens, targets;

  explicit Fixture(int n_layer = 4) {
    cfg.n_layer = n_layer;  // the defaults are gpt-tiny's: 128 wide, 4 heads, vocab 256
    const Gpt shape(cfg);
    params.assign(static_cast<size_t>(shape.layout().total), 0.0f);
    init_weights(shape.layout(), cfg, 7, params.data());
    for (int m = 0; m < micro_batches; ++m) {
      std::vector<int32_t> in(static_cast<size_t>(B) * T), out(in.size());
      for (size_t i = 0; i < in.size(); ++i) {
        in[i] = static_cast<int32_t>((m * 101 + i * 37 + (i * i) % 13) % cfg.vocab_size);
        out[i] = static_cast<int32_t>((in[i] * 5 + 3) % cfg.vocab_size);
      }
      tokens.push_back(in);
      targets.push_back(out);
    }
  }

  int num_layers() const { return static_cast<int>(cfg.n_layer) + 2; }
  std::vector<float> zero_grads() const { return std::vector<float>(params.size(), 0.0f); }

  MicroBatch mb(int m) const {
    return MicroBatch{tokens[m].data(), targets[m].data(), B, T,
                      1.0f / static_cast<float>(B * T * micro_batches)};
  }
};

struct Reference {
  std::vector<double> losses;
  std::vector<float> grads;
};

// Whole-model forward then backward for each micro-batch in turn.
inline Reference sequential(const Fixture& f, int checkpoint_interval = 0) {
  Gpt gpt(f.cfg);
  gpt.set_activation_checkpoint_interval(checkpoint_interval);
  Reference r{{}, f.zero_grads()};
  for (int m = 0; m < f.micro_batches; ++m) {
    r.losses.push_back(gpt.forward(f.params.data(), f.mb(m)));
    gpt.backward(f.params.data(), r.grads.data(), f.mb(m));
  }
  return r;
}

}  // namespace ds::model::testing
