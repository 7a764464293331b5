// All activation memory of the model except the backward scratch: what flows
// between layers and what each layer saves for its backward, for every micro-batch
// slot in flight on this process.
//
// - A plain (not checkpointed) chunk keeps each layer's output and saved region per
//   slot.
// - A checkpointed chunk keeps only its last layer's output per slot (the next
//   chunk's input); its layers' saved regions and inner outputs come from a pool
//   shared by all checkpointed chunks, one set per position in a chunk: only one
//   chunk is recomputed at a time, so the pool needs k sets, not one per layer.
// - The head keeps one saved set (its logits, [B, T, V], are the largest activation
//   and on the last pipeline stage 1F1B runs each micro-batch's backward right after
//   its forward); its output, the losses, is per slot like any last output.
//
// Buffers only grow: once ensure() has seen a range, slot count and size, running
// it again allocates nothing.
#pragma once

#include <memory>
#include <vector>

#include "model/checkpoint_chunks.h"
#include "model/layer.h"
#include "tensor/memory.h"

namespace ds::model {

class ActivationStore {
 public:
  // Everything is allocated on `device` (where the model's ops run).
  explicit ActivationStore(tensor::Device device) : device_(device) {}

  // Everything running `plan` needs for slots [0, slots) of micro-batches of B x T.
  void ensure(const std::vector<std::unique_ptr<Layer>>& layers, const ChunkPlan& plan, int B,
              int T, int slots);

  // Where layer `layer` of a chunk writes its output and its saved activations.
  float* output(int slot, int layer) { return slots_[slot].outputs[layer].as<float>(); }
  const float* output(int slot, int layer) const { return slots_[slot].outputs[layer].as<float>(); }
  float* saved(int slot, int index, const Layer& layer, const Chunk& chunk);
  // Inner outputs of a checkpointed chunk, by position in the chunk. During a
  // recompute the chunk's last output, already kept per slot, goes to its position too.
  float* pool_output(int position) { return pool_outputs_[position].as<float>(); }

  static bool keeps_one_set(const Layer& layer) { return layer.spec().kind == LayerKind::kHead; }

  bool empty() const { return bytes() == 0; }
  int64_t bytes() const;

 private:
  void ensure_floats(tensor::Buffer& b, int64_t floats) const;
  void ensure_position(std::vector<tensor::Buffer>& pool, int position, int64_t floats) const;

  struct Slot {
    std::vector<tensor::Buffer> outputs;  // by layer index
    std::vector<tensor::Buffer> saved;
  };
  std::vector<Slot> slots_;
  std::vector<tensor::Buffer> pool_saved_, pool_outputs_;  // by position in a chunk
  tensor::Buffer head_saved_;
  tensor::Device device_;
};

}  // namespace ds::model
