// The GPT model for one process: the layer list, the activations between layers,
// and forward/backward over a micro-batch with the parameters and gradients in
// flat buffers laid out by ModelLayout.
#pragma once

#include <memory>
#include <vector>

#include "config/model_config.h"
#include "model/block_layer.h"
#include "model/layer.h"
#include "model/layer_buffers.h"
#include "model/model_layout.h"

namespace ds::model {

class Gpt {
 public:
  explicit Gpt(const config::ModelConfig& config);

  const config::ModelConfig& config() const { return config_; }
  const ModelLayout& layout() const { return layout_; }
  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }

  // Allocates activations for micro-batches of up to B x T; forward and backward then
  // allocate nothing.
  void reserve(int B, int T);

  // Runs every layer with the weights `buffers` provides; returns the mean loss over
  // the B*T positions. Checks token ids.
  double forward(const MicroBatch& mb, LayerBuffers& buffers);
  // After forward on the same micro-batch: accumulates (+=) each layer's gradient into
  // buffers.grads(layer), last layer first.
  void backward(const MicroBatch& mb, LayerBuffers& buffers);

  // The same on full fp32 parameters and gradients in flat buffers.
  double forward(const float* params, const MicroBatch& mb);
  void backward(const float* params, float* grads, const MicroBatch& mb);

  // Per-position losses of the last forward ([B, T]).
  const float* losses() const;

 private:
  config::ModelConfig config_;
  ModelLayout layout_;
  BlockScratch scratch_;
  std::vector<std::unique_ptr<Layer>> layers_;
  // activations_[i] is layer i's output; gradients_ hold dL/d(output) for two
  // neighbouring layers at a time during the backward.
  std::vector<tensor::Buffer> activations_;
  tensor::Buffer grad_a_, grad_b_;
  int reserved_B_ = 0, reserved_T_ = 0;
  int64_t wte_local_ = 0;  // offset of wte inside the embedding layer, for the tied head
};

}  // namespace ds::model
