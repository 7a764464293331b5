// A layer of the model: a contiguous range of the flat parameter buffer with a
// forward and a backward. The engine walks the layer list and does around each
// layer what its ZeRO stage or pipeline stage needs (gather, reduce, recompute).
//
// A layer owns no activation memory: what its backward needs from its forward lives
// in a region the model hands in (`saved`), one per micro-batch in flight, or one
// shared by all checkpointed layers at the same position of their chunk. That is
// what lets a pipeline stage keep several micro-batches and lets checkpointing
// actually save memory.
#pragma once

#include <cstdint>

#include "model/model_layout.h"
#include "tensor/ops.h"

namespace ds::model {

// One micro-batch as every layer sees it.
struct MicroBatch {
  const int32_t* tokens = nullptr;   // [B, T]
  const int32_t* targets = nullptr;  // [B, T]; only the head reads them
  int B = 0;
  int T = 0;
  // d(objective)/d(loss at one position): 1 / (positions with a target x
  // accumulation_steps), times the loss scale under fp16 (count_targets). The head's
  // backward starts from it; ignored positions (kIgnoreTarget) get no gradient. A training
  // micro-batch carries the same dloss to its forward and its backward: the head's forward
  // computes the logits' gradient with the losses when it is not 0.
  float dloss = 0;
  // Where tokens is a device's copy: the same ids in host memory (nullptr when not at hand).
  const int32_t* host_tokens = nullptr;
};

// Positions of a micro-batch that have a target (are not tensor::cpu::kIgnoreTarget).
int64_t count_targets(const int32_t* targets, int64_t positions);

class Layer {
 public:
  // Every pointer the layer is given lives where `ops` runs, and it computes through `ops`.
  Layer(const LayerSpec& spec, tensor::Ops& ops) : ops_(ops), spec_(spec) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const LayerSpec& spec() const { return spec_; }

  // Floats in the layer's output for a micro-batch: [B, T, C], or [B, T] losses for the head.
  virtual int64_t output_size(int B, int T) const = 0;
  // Floats of the region the forward saves its activations in for the backward
  // (64-byte aligned, as tensor::Buffer gives); 0 when the backward needs none.
  virtual int64_t saved_size(int B, int T) const = 0;

  // `weights` points at this layer's range of the flat buffer. `x` is the previous
  // layer's output (unused by the embedding, which reads the tokens). Writes what the
  // backward needs into `saved` (saved_size(B, T) floats).
  virtual void forward(const float* weights, const MicroBatch& mb, const float* x, float* y,
                       float* saved) = 0;
  // Accumulates (+=) parameter gradients into `dweights` (this layer's range of the
  // gradient buffer) and WRITES the input gradient to `dx` (nullptr for the embedding), which
  // therefore needs no zeroing first; a block uses it as its residual gradient's buffer.
  // `dy` is the output gradient (unused by the head, which starts from mb.dloss).
  // `x` and `saved` are those of the forward of the same micro-batch; the backward
  // may overwrite `saved`.
  virtual void backward(const float* weights, float* dweights, const MicroBatch& mb, const float* x,
                        const float* dy, float* dx, float* saved) = 0;

 protected:
  tensor::Ops& ops_;

  // A parameter's position inside this layer's range.
  int64_t local_offset(const ModelLayout& layout, int param_in_layer) const {
    return layout.params[spec_.first_param + param_in_layer].offset - spec_.offset;
  }

 private:
  LayerSpec spec_;
};

}  // namespace ds::model
