// The GPT model for one process: the layer list, the activations between layers,
// and forward/backward over a micro-batch with the parameters and gradients in
// flat buffers laid out by ModelLayout.
//
// A pipeline stage runs a range of the layer list with several micro-batches in
// flight (1F1B): forward_range/backward_range take the range and an activation
// slot, and each slot keeps its own activations, so F(0) F(1) B(0) B(1) gives the
// gradients of F(0) B(0) F(1) B(1). With an activation checkpoint interval k > 0 the
// range is cut into chunks of k layers that keep only their input and recompute
// their forward in the backward (checkpoint_chunks.h).
//
// The model computes through a tensor::Ops (the CPU's by default, or a CUDA device's): its
// activations live on that device, and so must the weights and gradients the LayerBuffers
// hand it. Micro-batches stay host arrays (the model checks the token ids there and copies
// them to the device itself); loss() comes back to the host.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "config/model_config.h"
#include "model/activation_store.h"
#include "model/backward_scratch.h"
#include "model/layer.h"
#include "model/layer_buffers.h"
#include "model/model_layout.h"
#include "tensor/ops.h"

namespace ds::model {

class Gpt {
 public:
  explicit Gpt(const config::ModelConfig& config, tensor::Ops& ops = tensor::cpu_ops());

  const config::ModelConfig& config() const { return config_; }
  const ModelLayout& layout() const { return layout_; }
  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }
  tensor::Ops& ops() const { return ops_; }
  int num_layers() const { return static_cast<int>(layers_.size()); }

  // DeepSpeed's pipeline.activation_checkpoint_interval: 0 (the default) keeps every
  // activation; k > 0 checkpoints chunks of k layers. Call before reserve.
  void set_activation_checkpoint_interval(int k);
  int activation_checkpoint_interval() const { return checkpoint_interval_; }

  // Allocates activations for `slots` micro-batches of up to B x T running every
  // layer (reserve) or layers [first, last) (reserve_range, what a pipeline stage
  // holds); forward and backward on what was reserved then allocate nothing. Running
  // something not reserved allocates what it lacks on first use.
  void reserve(int B, int T, int slots = 1);
  void reserve_range(int first, int last, int B, int T, int slots);

  // Runs layers [first, last) on the micro-batch in activation slot `slot`. `x` is
  // the output of layer first-1 (the previous pipeline stage's output), nullptr when
  // first == 0: the embedding reads mb.tokens. Returns the output of layer last-1 —
  // hidden states [B, T, C], or the per-position losses [B, T] when the range ends
  // with the head — valid until the next forward on the slot. The caller keeps `x`
  // alive until backward_range on the slot. Checks token ids.
  const float* forward_range(int first, int last, const MicroBatch& mb, const float* x,
                             LayerBuffers& buffers, int slot);
  // After forward_range(first, last, ...) on the slot, with the forward's micro-batch (its
  // tokens the same ids: a GPU reads the host's copy): accumulates (+=) each layer's
  // gradient into buffers.grads(layer), last layer first. `dy` is the gradient of the
  // range's output (nullptr when the range ends with the head, which starts from
  // mb.dloss). Returns the gradient w.r.t. `x` (nullptr when first == 0), valid until
  // the next backward. Throws ds::Error when the head's activations of the slot were
  // overwritten by another slot's forward (the head keeps one set).
  const float* backward_range(int first, int last, const MicroBatch& mb, const float* x,
                              const float* dy, LayerBuffers& buffers, int slot);
  // The mean loss over the positions with a target (not kIgnoreTarget) of the slot's last
  // forward that ended with the head.
  double loss(int slot) const;

  // Runs every layer with the weights `buffers` provides, in slot 0; returns the mean
  // loss over the B*T positions. Checks token ids.
  double forward(const MicroBatch& mb, LayerBuffers& buffers);
  // After forward on the same micro-batch: accumulates (+=) each layer's gradient into
  // buffers.grads(layer), last layer first.
  void backward(const MicroBatch& mb, LayerBuffers& buffers);

  // The same on full fp32 parameters and gradients in flat buffers.
  double forward(const float* params, const MicroBatch& mb);
  void backward(const float* params, float* grads, const MicroBatch& mb);

  // Per-position losses of the last forward that ended with the head ([B, T]), on the
  // model's device.
  const float* losses() const;

  // Bytes of activation memory the model holds (all slots, the checkpoint pool, the
  // gradients between layers and the backward scratch).
  int64_t activation_bytes() const;

 private:
  void check_range(int first, int last, int slot) const;
  void check_tokens(const MicroBatch& mb, bool tokens, bool targets) const;
  // The micro-batch as the layers of slot `slot` see it: `mb` itself on the CPU; on a
  // device, with the tokens and targets the slot's forward copied there (upload: copy now).
  MicroBatch on_device(const MicroBatch& mb, int slot, bool upload_tokens, bool upload_targets);
  void bind_tied_head(Layer& layer, LayerBuffers& buffers, bool with_grads);
  void run_forward(int index, const MicroBatch& mb, const float* x, float* y, float* saved,
                   LayerBuffers& buffers);
  // Re-runs a checkpointed chunk's forward from its input, filling the pool.
  void recompute(const Chunk& chunk, const MicroBatch& mb, const float* x, LayerBuffers& buffers,
                 int slot);

  config::ModelConfig config_;
  tensor::Ops& ops_;
  ModelLayout layout_;
  BackwardScratch scratch_;
  std::vector<std::unique_ptr<Layer>> layers_;
  ActivationStore store_;
  int checkpoint_interval_ = 0;
  // dL/d(output) for two neighbouring layers at a time during the backward.
  tensor::Buffer grad_a_, grad_b_;
  // Off the CPU: each slot's tokens and targets on the device, and the host's copy of the
  // losses that loss() sums.
  std::vector<tensor::Buffer> slot_tokens_, slot_device_targets_;
  mutable std::vector<float> host_losses_;
  int64_t wte_local_ = 0;  // offset of wte inside the embedding layer, for the tied head
  // Positions (B*T) of each slot's last forward that ended with the head.
  std::vector<int64_t> slot_positions_;
  std::vector<int64_t> slot_targets_;  // of those, positions with a target (not ignored)
  int head_slot_ = -1;                 // whose activations the head's one set holds; -1: none
  int last_head_slot_ = -1;
};

}  // namespace ds::model
