// A layer of the model: a contiguous range of the flat parameter buffer with a
// forward and a backward. The engine walks the layer list and does around each
// layer what its ZeRO stage or pipeline stage needs (gather, reduce, recompute).
#pragma once

#include <cstdint>

#include "model/model_layout.h"

namespace ds::model {

// One micro-batch as every layer sees it.
struct MicroBatch {
  const int32_t* tokens = nullptr;   // [B, T]
  const int32_t* targets = nullptr;  // [B, T]; only the head reads them
  int B = 0;
  int T = 0;
  // d(objective)/d(loss at one position): 1 / (B T accumulation_steps), times the
  // loss scale under fp16. The head's backward starts from it.
  float dloss = 0;
};

class Layer {
 public:
  explicit Layer(const LayerSpec& spec) : spec_(spec) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const LayerSpec& spec() const { return spec_; }

  // Allocates the activation memory for micro-batches of up to B x T (once).
  virtual void reserve(int B, int T) = 0;
  // Floats in the layer's output for a micro-batch: [B, T, C], or [B, T] losses for the head.
  virtual int64_t output_size(int B, int T) const = 0;

  // `weights` points at this layer's range of the flat buffer. `x` is the previous
  // layer's output (unused by the embedding, which reads the tokens).
  virtual void forward(const float* weights, const MicroBatch& mb, const float* x, float* y) = 0;
  // Accumulates (+=) parameter gradients into `dweights` (this layer's range of the
  // gradient buffer) and the input gradient into `dx` (nullptr for the embedding).
  // `dy` is the output gradient (unused by the head, which starts from mb.dloss).
  // Needs the activations of the forward that just ran on the same micro-batch.
  virtual void backward(const float* weights, float* dweights, const MicroBatch& mb, const float* x,
                        const float* dy, float* dx) = 0;

 protected:
  // A parameter's position inside this layer's range.
  int64_t local_offset(const ModelLayout& layout, int param_in_layer) const {
    return layout.params[spec_.first_param + param_in_layer].offset - spec_.offset;
  }

 private:
  LayerSpec spec_;
};

}  // namespace ds::model
