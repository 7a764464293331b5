#include "model/gpt.h"

#include <algorithm>

#include "model/block_layer.h"
#include "model/embedding_layer.h"
#include "model/head_layer.h"
#include "model/llama_block_layer.h"
#include "tensor/cpu/kernels.h"
#include "util/error.h"

namespace ds::model {

int64_t count_targets(const int32_t* targets, int64_t positions) {
  return positions - std::count(targets, targets + positions, tensor::cpu::kIgnoreTarget);
}

using tensor::Buffer;
using tensor::MemoryCategory;

Gpt::Gpt(const config::ModelConfig& config, tensor::Ops& ops)
    : config_(config), ops_(ops), layout_(build_layout(config)), store_(ops.device()) {
  scratch_.device = ops.device();
  for (const LayerSpec& spec : layout_.layers) {
    switch (spec.kind) {
      case LayerKind::kEmbedding:
        layers_.push_back(std::make_unique<EmbeddingLayer>(spec, layout_, config_, ops_));
        break;
      case LayerKind::kBlock:
        if (config_.llama()) {
          layers_.push_back(
              std::make_unique<LlamaBlockLayer>(spec, layout_, config_, &scratch_, ops_));
        } else {
          layers_.push_back(std::make_unique<BlockLayer>(spec, layout_, config_, &scratch_, ops_));
        }
        break;
      case LayerKind::kHead:
        layers_.push_back(std::make_unique<HeadLayer>(spec, layout_, config_, &scratch_, ops_));
        break;
    }
  }
  // The token embedding is the embedding layer's first parameter (wte, embed_tokens).
  wte_local_ = layout_.params[layout_.layers[0].first_param].offset - layout_.layers[0].offset;
}

void Gpt::set_activation_checkpoint_interval(int k) {
  DS_CHECK(k >= 0, "activation checkpoint interval {} is negative", k);
  DS_CHECK(store_.empty(), "set the activation checkpoint interval before reserve()");
  checkpoint_interval_ = k;
}

void Gpt::reserve(int B, int T, int slots) { reserve_range(0, num_layers(), B, T, slots); }

void Gpt::reserve_range(int first, int last, int B, int T, int slots) {
  check_range(first, last, slots - 1);
  DS_CHECK(T <= config_.block_size, "sequence length {} exceeds block_size {}", T,
           config_.block_size);
  store_.ensure(layers_, ChunkPlan(layout_, first, last, checkpoint_interval_), B, T, slots);
  scratch_.reserve(B, T, config_,
                   ops_.attention_saved_floats(B, T, static_cast<int>(config_.n_embd),
                                               static_cast<int>(config_.n_head)));
  const int64_t hidden = int64_t{B} * T * config_.n_embd;
  tensor::grow_floats(grad_a_, hidden, MemoryCategory::kActivations, ops_.device());
  tensor::grow_floats(grad_b_, hidden, MemoryCategory::kActivations, ops_.device());
  if (static_cast<int>(slot_positions_.size()) < slots) {
    slot_positions_.resize(slots, 0);
    slot_targets_.resize(slots, 0);
  }
  if (!ops_.device().is_cpu()) {
    if (static_cast<int>(slot_tokens_.size()) < slots) {
      slot_tokens_.resize(slots);
      slot_device_targets_.resize(slots);
    }
    // int32 ids in float-sized buffers: the same 4 bytes each.
    for (int s = 0; s < slots; ++s) {
      tensor::grow_floats(slot_tokens_[s], int64_t{B} * T, MemoryCategory::kActivations,
                          ops_.device());
      tensor::grow_floats(slot_device_targets_[s], int64_t{B} * T, MemoryCategory::kActivations,
                          ops_.device());
    }
  }
}

MicroBatch Gpt::on_device(const MicroBatch& mb, int slot, bool upload_tokens, bool upload_targets) {
  if (ops_.device().is_cpu()) return mb;
  const size_t bytes = sizeof(int32_t) * static_cast<size_t>(int64_t{mb.B} * mb.T);
  if (upload_tokens) ops_.upload(slot_tokens_[slot].data(), mb.tokens, bytes);
  if (upload_targets) ops_.upload(slot_device_targets_[slot].data(), mb.targets, bytes);
  MicroBatch device = mb;
  device.host_tokens = mb.tokens;
  device.tokens = slot_tokens_[slot].as<int32_t>();
  device.targets = slot_device_targets_[slot].as<int32_t>();
  return device;
}

void Gpt::check_range(int first, int last, int slot) const {
  DS_CHECK(0 <= first && first < last && last <= num_layers(),
           "layer range [{}, {}) is not inside the model's {} layers", first, last, num_layers());
  DS_CHECK(slot >= 0, "activation slot {} is negative", slot);
}

void Gpt::check_tokens(const MicroBatch& mb, bool tokens, bool targets) const {
  const int64_t n = int64_t{mb.B} * mb.T;
  for (int64_t i = 0; i < n; ++i) {
    const bool tok_ok = !tokens || (mb.tokens[i] >= 0 && mb.tokens[i] < config_.vocab_size);
    const bool tgt_ok = !targets || (mb.targets[i] >= 0 && mb.targets[i] < config_.vocab_size) ||
                        mb.targets[i] == tensor::cpu::kIgnoreTarget;
    if (!tok_ok || !tgt_ok) {
      throw UsageError(
          fmt::format("token id {} at position {} of the batch is outside the "
                      "vocabulary of {} tokens",
                      tok_ok ? mb.targets[i] : mb.tokens[i], i, config_.vocab_size));
    }
  }
}

void Gpt::bind_tied_head(Layer& layer, LayerBuffers& buffers, bool with_grads) {
  if (layer.spec().kind != LayerKind::kHead) return;
  auto& head = static_cast<HeadLayer&>(layer);
  if (!head.tied()) return;
  head.bind_tied_embedding(buffers.tied_wte(wte_local_),
                           with_grads ? buffers.tied_dwte(wte_local_) : nullptr);
}

void Gpt::run_forward(int index, const MicroBatch& mb, const float* x, float* y, float* saved,
                      LayerBuffers& buffers) {
  Layer& layer = *layers_[index];
  bind_tied_head(layer, buffers, false);
  layer.forward(buffers.weights(index), mb, x, y, saved);
  buffers.forward_done(index);
}

const float* Gpt::forward_range(int first, int last, const MicroBatch& mb, const float* x,
                                LayerBuffers& buffers, int slot) {
  check_range(first, last, slot);
  DS_CHECK((first == 0) == (x == nullptr),
           "forward_range({}, {}): the input is {} but must be given exactly when the range "
           "does not start with the embedding",
           first, last, x ? "given" : "missing");
  reserve_range(first, last, mb.B, mb.T, slot + 1);
  const bool with_head = last == num_layers();
  check_tokens(mb, first == 0, with_head);
  const MicroBatch batch = on_device(mb, slot, first == 0, with_head);

  const ChunkPlan plan(layout_, first, last, checkpoint_interval_);
  const float* in = x;
  for (int c = 0; c < plan.count(); ++c) {
    const Chunk chunk = plan[c];
    for (int i = chunk.first; i < chunk.last; ++i) {
      // A checkpointed chunk's inner outputs are recomputed in the backward: pool.
      const bool kept = !chunk.checkpointed || i == chunk.last - 1;
      float* y = kept ? store_.output(slot, i) : store_.pool_output(i - chunk.first);
      run_forward(i, batch, in, y, store_.saved(slot, i, *layers_[i], chunk), buffers);
      in = y;
    }
  }
  if (with_head) {
    head_slot_ = slot;
    last_head_slot_ = slot;
    slot_positions_[slot] = int64_t{mb.B} * mb.T;
    slot_targets_[slot] = count_targets(mb.targets, slot_positions_[slot]);
  }
  return in;
}

void Gpt::recompute(const Chunk& chunk, const MicroBatch& mb, const float* x, LayerBuffers& buffers,
                    int slot) {
  const float* in = x;
  for (int i = chunk.first; i < chunk.last; ++i) {
    // The last output is kept per slot already (and may be in use by the caller):
    // the recomputed copy goes to the pool.
    float* y = store_.pool_output(i - chunk.first);
    run_forward(i, mb, in, y, store_.saved(slot, i, *layers_[i], chunk), buffers);
    in = y;
  }
}

const float* Gpt::backward_range(int first, int last, const MicroBatch& mb, const float* x,
                                 const float* dy, LayerBuffers& buffers, int slot) {
  check_range(first, last, slot);
  const bool with_head = last == num_layers();
  DS_CHECK((first == 0) == (x == nullptr),
           "backward_range({}, {}): the input of the forward must be given exactly when the "
           "range does not start with the embedding",
           first, last);
  DS_CHECK(with_head || dy != nullptr,
           "backward_range({}, {}): the gradient of the range's output is missing", first, last);
  const ChunkPlan plan(layout_, first, last, checkpoint_interval_);
  DS_CHECK(static_cast<int>(slot_positions_.size()) > slot,
           "backward_range on activation slot {} before any forward on it", slot);
  const MicroBatch batch = on_device(mb, slot, false, false);  // the forward's copies
  if (with_head && !plan[plan.count() - 1].checkpointed && head_slot_ != slot) {
    throw Error(fmt::format("backward of micro-batch slot {} through the head, but the head's "
                            "activations hold {}",
                            slot,
                            head_slot_ < 0 ? std::string("nothing (already used by a backward)")
                                           : fmt::format("slot {}", head_slot_)),
                "the head keeps one micro-batch's activations: run the last stage's backward "
                "right after its forward (1F1B), or checkpoint the head's chunk");
  }

  // Two gradient buffers alternate between neighbouring layers; start with the one
  // that is not `dy` (the caller may pass the previous backward_range's result).
  float* dx = grad_a_.as<float>();
  float* spare = grad_b_.as<float>();
  if (dy == dx) std::swap(dx, spare);
  const float* grad = dy;  // gradient of the current layer's output
  for (int c = plan.count(); c-- > 0;) {
    const Chunk chunk = plan[c];
    const float* chunk_in = chunk.first == first ? x : store_.output(slot, chunk.first - 1);
    if (chunk.checkpointed) recompute(chunk, batch, chunk_in, buffers, slot);
    for (int i = chunk.last; i-- > chunk.first;) {
      Layer& layer = *layers_[i];
      const float* in = i == chunk.first     ? chunk_in
                        : chunk.checkpointed ? store_.pool_output(i - 1 - chunk.first)
                                             : store_.output(slot, i - 1);
      float* dx_now = i > 0 ? dx : nullptr;
      bind_tied_head(layer, buffers, true);
      layer.backward(buffers.weights(i), buffers.grads(i), batch, in, grad, dx_now,
                     store_.saved(slot, i, layer, chunk));
      buffers.backward_done(i);
      if (ActivationStore::keeps_one_set(layer)) head_slot_ = -1;  // overwritten in place
      grad = dx_now;
      std::swap(dx, spare);
    }
  }
  return grad;
}

double Gpt::loss(int slot) const {
  DS_CHECK(
      slot >= 0 && slot < static_cast<int>(slot_positions_.size()) && slot_positions_[slot] > 0,
      "no forward through the head ran on activation slot {}", slot);
  // The mean over the positions with a target (ignored ones have loss 0), as PyTorch's
  // cross_entropy with ignore_index; 0 for a micro-batch without any.
  const int64_t n = slot_positions_[slot];
  const float* losses = store_.output(slot, num_layers() - 1);
  if (!ops_.device().is_cpu()) {
    host_losses_.resize(static_cast<size_t>(n));
    ops_.download(host_losses_.data(), losses, sizeof(float) * static_cast<size_t>(n));
    losses = host_losses_.data();
  }
  const int64_t counted = slot_targets_[slot];
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += losses[i];
  return counted > 0 ? sum / static_cast<double>(counted) : 0.0;
}

double Gpt::forward(const MicroBatch& mb, LayerBuffers& buffers) {
  forward_range(0, num_layers(), mb, nullptr, buffers, 0);
  return loss(0);
}

void Gpt::backward(const MicroBatch& mb, LayerBuffers& buffers) {
  backward_range(0, num_layers(), mb, nullptr, nullptr, buffers, 0);
}

double Gpt::forward(const float* params, const MicroBatch& mb) {
  FlatLayerBuffers buffers(layout_, params, nullptr);
  return forward(mb, buffers);
}

void Gpt::backward(const float* params, float* grads, const MicroBatch& mb) {
  FlatLayerBuffers buffers(layout_, params, grads);
  backward(mb, buffers);
}

const float* Gpt::losses() const {
  DS_CHECK(last_head_slot_ >= 0, "losses() before any forward through the head");
  return store_.output(last_head_slot_, num_layers() - 1);
}

int64_t Gpt::activation_bytes() const {
  return store_.bytes() + scratch_.bytes() + static_cast<int64_t>(grad_a_.size() + grad_b_.size());
}

}  // namespace ds::model
