// Where each layer's fp32 weights and gradient accumulators come from while the
// model runs. The model asks for them layer by layer, so an engine can gather a
// sharded layer (ZeRO-3), up-cast 16-bit weights, or reduce a layer's gradient as
// soon as its backward is done (ZeRO-2) — and a plain run just points into flat
// fp32 buffers (FlatLayerBuffers).
#pragma once

#include <cstdint>

#include "model/model_layout.h"

namespace ds::model {

class LayerBuffers {
 public:
  virtual ~LayerBuffers() = default;
  // fp32 weights of `layer` (its range of the model layout), valid until the
  // matching *_done call.
  virtual const float* weights(int layer) = 0;
  // The fp32 buffer that `layer`'s backward accumulates (+=) its gradient into.
  virtual float* grads(int layer) = 0;
  // `layer`'s forward is done: gathered weights may be released.
  virtual void forward_done(int layer) { (void)layer; }
  // `layer`'s backward is done: its gradient is complete for this micro-batch.
  virtual void backward_done(int layer) { (void)layer; }

  // The tied LM head's weight (wte) and its gradient accumulator, `offset_in_layer0`
  // floats into the embedding layer's range. By default layer 0's own buffers; a
  // pipeline's last stage, which does not hold layer 0, serves its own copy of wte
  // and sums the gradients with the first stage's.
  virtual const float* tied_wte(int64_t offset_in_layer0) { return weights(0) + offset_in_layer0; }
  virtual float* tied_dwte(int64_t offset_in_layer0) { return grads(0) + offset_in_layer0; }
};

// Full fp32 parameters and gradients in flat buffers laid out by ModelLayout.
class FlatLayerBuffers final : public LayerBuffers {
 public:
  FlatLayerBuffers(const ModelLayout& layout, const float* params, float* grads)
      : layout_(layout), params_(params), grads_(grads) {}
  const float* weights(int layer) override { return params_ + layout_.layers[layer].offset; }
  float* grads(int layer) override { return grads_ + layout_.layers[layer].offset; }

 private:
  const ModelLayout& layout_;
  const float* params_;
  float* grads_;
};

}  // namespace ds::model
