#include "model/activation_store.h"

namespace ds::model {

using tensor::Buffer;
using tensor::MemoryCategory;

void ActivationStore::ensure_floats(Buffer& b, int64_t floats) const {
  tensor::grow_floats(b, floats, MemoryCategory::kActivations, device_);
}

void ActivationStore::ensure_position(std::vector<Buffer>& pool, int position,
                                      int64_t floats) const {
  if (static_cast<int>(pool.size()) <= position) pool.resize(position + 1);
  ensure_floats(pool[position], floats);
}

void ActivationStore::ensure(const std::vector<std::unique_ptr<Layer>>& layers,
                             const ChunkPlan& plan, int B, int T, int slots) {
  if (static_cast<int>(slots_.size()) < slots) slots_.resize(slots);
  for (Slot& s : slots_) {
    s.outputs.resize(layers.size());
    s.saved.resize(layers.size());
  }
  for (int c = 0; c < plan.count(); ++c) {
    const Chunk chunk = plan[c];
    for (int i = chunk.first; i < chunk.last; ++i) {
      const Layer& layer = *layers[i];
      const int position = i - chunk.first;
      const int64_t out = layer.output_size(B, T), saved = layer.saved_size(B, T);
      if (keeps_one_set(layer)) {
        ensure_floats(head_saved_, saved);
      } else if (chunk.checkpointed) {
        ensure_position(pool_saved_, position, saved);
      }
      if (chunk.checkpointed) ensure_position(pool_outputs_, position, out);
      const bool per_slot_output = !chunk.checkpointed || i == chunk.last - 1;
      for (int s = 0; s < slots; ++s) {
        if (per_slot_output) ensure_floats(slots_[s].outputs[i], out);
        if (!chunk.checkpointed && !keeps_one_set(layer)) ensure_floats(slots_[s].saved[i], saved);
      }
    }
  }
}

float* ActivationStore::saved(int slot, int index, const Layer& layer, const Chunk& chunk) {
  if (keeps_one_set(layer)) return head_saved_.as<float>();
  if (chunk.checkpointed) return pool_saved_[index - chunk.first].as<float>();
  return slots_[slot].saved[index].as<float>();
}

int64_t ActivationStore::bytes() const {
  size_t total = head_saved_.size();
  for (const Slot& s : slots_) {
    for (const Buffer& b : s.outputs) total += b.size();
    for (const Buffer& b : s.saved) total += b.size();
  }
  for (const Buffer& b : pool_saved_) total += b.size();
  for (const Buffer& b : pool_outputs_) total += b.size();
  return static_cast<int64_t>(total);
}

}  // namespace ds::model
