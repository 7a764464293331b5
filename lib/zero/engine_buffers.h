// The model's view of the ZeRO engine: fp32 weights and gradient buffers, layer by
// layer, with what each stage does around a layer.
//
// Weights: 16-bit storage is up-cast into a work slot just before a layer runs; at
// stage 3 the layer is first all-gathered, and the next layer of the walk (forward:
// up, backward: down) is gathered in the background meanwhile (prefetch, within
// stage3_prefetch_bucket_size and stage3_max_live_parameters). Layers no larger than
// stage3_param_persistence_threshold stay gathered between steps. The embedding has a
// slot of its own because the tied head uses it between the embedding's forward and
// its backward.
//
// Gradients: at stages 2 and 3 a layer's backward writes into a bucket buffer; when
// the bucket's last layer is done the bucket is reduce-scattered (in the background
// with overlap_comm) and only the own pieces are added to the engine's storage.
#pragma once

#include <memory>
#include <vector>

#include "zero/engine.h"
#include "zero/grad_reduce.h"

namespace ds::zero {

class Engine::Buffers final : public model::LayerBuffers {
 public:
  explicit Buffers(Engine& e);

  // The parameters changed: gathered and up-cast copies are stale (persistent layers
  // are gathered again here).
  void invalidate();
  void begin_forward() { forward_ = true; }
  void begin_backward();
  // Waits for the last bucket of the micro-step and stores its pieces.
  void finish_backward();

  // Bytes of the whole small layers kept on every rank at stage 3 (parameters, too).
  int64_t persistent_bytes() const;

  const float* weights(int l) override;
  float* grads(int l) override;
  void backward_done(int l) override;

 private:
  struct Slot {
    int layer = -1;
    tensor::Buffer fp32;      // the layer's weights as the model reads them
    tensor::Buffer gathered;  // stage 3, 16-bit: the gathered storage before up-casting
    std::unique_ptr<PendingOp> pending;
  };
  // Fills `slot` with layer l's fp32 weights (gathering at stage 3), now or in the background.
  void load(Slot& slot, int l, Mode mode);
  // Finishes a background gather: waits and up-casts.
  void complete(Slot& slot);
  void prefetch(int current, int next);
  void gather_persistent();
  float* bucket_buffer() { return bucket_f32_[bucket_buf_].as<float>(); }

  Engine& e_;
  // Weights are up-cast or gathered into slots (16-bit storage, or stage 3); otherwise the
  // model reads the fp32 parameters in place. (A pipeline stage may hold no embedding, so
  // no buffer's size can stand in for this.)
  bool work_weights_;
  Slot slots_[2];
  Slot embedding_;
  int current_ = 0;  // the slot the model is using
  bool forward_ = true;
  std::vector<tensor::Buffer> persistent_;  // stage 3: full fp32 weights of small layers

  // Gradients.
  tensor::Buffer dw_layer_;      // stages 0-1, 16-bit: one layer's fp32 accumulator
  tensor::Buffer dw_embedding_;  // the embedding's (the tied head adds to it early)
  tensor::Buffer bucket_f32_[2];
  int bucket_buf_ = 0;
  int open_bucket_ = -1;
  int dw_layer_owner_ = -1;
  bool embedding_grads_fresh_ = true;
  std::vector<int> bucket_of_;  // layer → index into e_.buckets_
};

}  // namespace ds::zero
