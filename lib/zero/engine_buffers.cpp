#include "zero/engine_buffers.h"

#include <algorithm>

#include "zero/step_timer.h"

namespace ds::zero {

using tensor::Buffer;
using tensor::DType;
using tensor::MemoryCategory;

Engine::Buffers::Buffers(Engine& e) : e_(e), work_weights_(e.mixed() || e.stage_ == 3) {
  // Everything here lives with the engine's states.
  const tensor::Device device = e.ops_.device();
  const auto floats = [device](int64_t n, MemoryCategory category) {
    return Buffer::floats(n, category, device);
  };
  const Partition& part = e.dp_part_;
  const int num_layers = static_cast<int>(part.layers.size());
  int64_t largest = 0;
  for (const LayerShard& s : part.layers) largest = std::max(largest, s.padded);
  const int64_t embedding = part.layers[0].padded;
  const bool stage3 = e.stage_ == 3;

  if (e.mixed() || stage3) {
    for (Slot& slot : slots_) {
      slot.fp32 = floats(largest, MemoryCategory::kCommunication);
      if (stage3 && e.mixed())
        slot.gathered = Buffer(e.esize() * largest, MemoryCategory::kCommunication, device);
    }
    embedding_.fp32 = floats(embedding, MemoryCategory::kCommunication);
    if (stage3 && e.mixed()) {
      embedding_.gathered = Buffer(e.esize() * embedding, MemoryCategory::kCommunication, device);
    }
  }
  if (stage3) {
    // DeepSpeed keeps parameters no larger than the threshold whole on every rank (up to
    // stage3_model_persistence_threshold in total); here the unit is the layer.
    const config::ZeroConfig& z = e.cfg_.ds.zero;
    persistent_.resize(num_layers);
    int64_t persistent_total = 0;
    for (int l = 0; l < num_layers; ++l) {
      const int64_t n = part.layers[l].numel;
      if (n <= z.param_persistence_threshold &&
          persistent_total + n <= z.model_persistence_threshold) {
        persistent_[l] = floats(part.layers[l].padded, MemoryCategory::kParameters);
        persistent_total += n;
      }
    }
  }

  if (e.stage_ >= 2) {
    bucket_of_.assign(num_layers, -1);
    int64_t largest_bucket = 0;
    for (size_t b = 0; b < e.buckets_.size(); ++b) {
      int64_t elements = 0;
      for (int l : e.buckets_[b]) {
        bucket_of_[l] = static_cast<int>(b);
        elements += part.layers[l].padded;
      }
      if (e.buckets_[b].front() != 0) largest_bucket = std::max(largest_bucket, elements);
    }
    dw_embedding_ = floats(embedding, MemoryCategory::kCommunication);
    bucket_f32_[0] = floats(largest_bucket, MemoryCategory::kCommunication);
    // overlap_comm: a bucket travels while the next fills the other buffer.
    if (e.overlap_) bucket_f32_[1] = floats(largest_bucket, MemoryCategory::kCommunication);
  } else if (e.mixed()) {
    dw_layer_ = floats(largest, MemoryCategory::kCommunication);
    dw_embedding_ = floats(embedding, MemoryCategory::kCommunication);
  }
  gather_persistent();
}

void Engine::Buffers::invalidate() {
  for (Slot* slot : {&slots_[0], &slots_[1], &embedding_}) {
    complete(*slot);
    slot->layer = -1;
  }
  gather_persistent();
}

void Engine::Buffers::begin_backward() {
  forward_ = false;
  embedding_grads_fresh_ = true;
}

void Engine::Buffers::finish_backward() {
  if (e_.reducer_) e_.reducer_->finish();
}

void Engine::Buffers::gather_persistent() {
  for (size_t l = 0; l < persistent_.size(); ++l) {
    if (persistent_[l].empty()) continue;
    const LayerShard& s = e_.dp_part_.layers[l];
    const char* own = static_cast<const char*>(e_.params_.data()) + e_.esize() * s.local_offset;
    void* full = e_.mixed() ? slots_[0].gathered.data() : persistent_[l].data();
    {
      ScopedTimer timer(e_.comm_seconds_);
      e_.buffer_comm().allgather(own, full, e_.dtype_, s.own.size, Mode::kBlocking);
    }
    if (e_.mixed()) e_.ops_.to_f32(persistent_[l].as<float>(), full, e_.dtype_, s.numel);
  }
}

int64_t Engine::Buffers::persistent_bytes() const {
  int64_t total = 0;
  for (const Buffer& b : persistent_) total += static_cast<int64_t>(b.size());
  return total;
}

void Engine::Buffers::load(Slot& slot, int l, Mode mode) {
  complete(slot);
  slot.layer = l;
  const LayerShard& s = e_.dp_part_.layers[l];
  if (e_.stage_ < 3) {
    e_.ops_.to_f32(slot.fp32.as<float>(),
                   static_cast<const char*>(e_.params_.data()) + e_.esize() * s.full_offset,
                   e_.dtype_, s.numel);
    return;
  }
  // Stage 3: gather the layer's pieces; 16-bit storage is up-cast when it arrives.
  const char* own = static_cast<const char*>(e_.params_.data()) + e_.esize() * s.local_offset;
  const bool upcast = e_.mixed();
  void* full = upcast ? slot.gathered.data() : slot.fp32.data();
  ScopedTimer timer(e_.comm_seconds_);
  slot.pending = e_.buffer_comm().allgather(own, full, e_.dtype_, s.own.size, mode);
  if (mode == Mode::kBlocking) {
    slot.pending.reset();
    if (upcast) e_.ops_.to_f32(slot.fp32.as<float>(), full, e_.dtype_, s.numel);
  }
}

void Engine::Buffers::complete(Slot& slot) {
  if (!slot.pending) return;
  {
    ScopedTimer timer(e_.comm_seconds_);
    slot.pending->wait();
  }
  slot.pending.reset();
  if (e_.mixed()) {
    e_.ops_.to_f32(slot.fp32.as<float>(), slot.gathered.data(), e_.dtype_,
                   e_.dp_part_.layers[slot.layer].numel);
  }
}

const float* Engine::Buffers::weights(int l) {
  if (!persistent_.empty() && !persistent_[l].empty()) return persistent_[l].as<float>();
  const LayerShard& s = e_.dp_part_.layers[l];
  if (!work_weights_) return e_.params_.as<float>() + s.full_offset;  // fp32, stage < 3
  if (l == 0) {
    if (embedding_.layer != 0) load(embedding_, 0, Mode::kBlocking);
    return embedding_.fp32.as<float>();
  }
  int found = slots_[0].layer == l ? 0 : slots_[1].layer == l ? 1 : -1;
  if (found < 0) {
    found = 1 - current_;
    load(slots_[found], l, Mode::kBlocking);
  } else {
    complete(slots_[found]);
  }
  current_ = found;
  if (e_.stage_ == 3) prefetch(l, forward_ ? l + 1 : l - 1);
  return slots_[found].fp32.as<float>();
}

void Engine::Buffers::prefetch(int current, int next) {
  const int num_layers = static_cast<int>(e_.dp_part_.layers.size());
  if (next < 1 || next >= num_layers || !persistent_[next].empty()) return;
  Slot& other = slots_[1 - current_];
  if (other.layer == next) return;
  const config::ZeroConfig& z = e_.cfg_.ds.zero;
  const int64_t n = e_.dp_part_.layers[next].numel;
  if (n > z.prefetch_bucket_size) return;
  if (e_.dp_part_.layers[current].numel + n > z.max_live_parameters) return;
  load(other, next, Mode::kAsync);
}

float* Engine::Buffers::grads(int l) {
  const LayerShard& s = e_.dp_part_.layers[l];
  if (e_.stage_ < 2 && !e_.mixed()) return e_.grads_.as<float>() + s.full_offset;  // fp32
  if (l == 0) {
    // The tied head adds to the embedding's gradient long before the embedding's own
    // backward: it has a buffer of its own.
    if (embedding_grads_fresh_) {
      e_.ops_.fill_zero(dw_embedding_.as<float>(), s.padded);
      embedding_grads_fresh_ = false;
    }
    return dw_embedding_.as<float>();
  }
  if (e_.stage_ < 2) {
    if (dw_layer_owner_ != l) {
      e_.ops_.fill_zero(dw_layer_.as<float>(), s.padded);
      dw_layer_owner_ = l;
    }
    return dw_layer_.as<float>();
  }
  const int b = bucket_of_[l];
  const std::vector<int>& bucket = e_.buckets_[b];
  const int64_t base = e_.dp_part_.layers[bucket.front()].full_offset;
  if (open_bucket_ != b) {
    const LayerShard& last = e_.dp_part_.layers[bucket.back()];
    e_.ops_.fill_zero(bucket_buffer(), last.full_offset + last.padded - base);
    open_bucket_ = b;
  }
  return bucket_buffer() + (s.full_offset - base);
}

void Engine::Buffers::backward_done(int l) {
  const LayerShard& s = e_.dp_part_.layers[l];
  if (e_.stage_ < 2) {
    if (!e_.mixed()) return;  // fp32: accumulated in place
    dw_layer_owner_ = -1;
    const float* dw = l == 0 ? dw_embedding_.as<float>() : dw_layer_.as<float>();
    e_.ops_.add_f32_into(static_cast<char*>(e_.grads_.data()) + e_.esize() * s.full_offset,
                         e_.dtype_, dw, s.numel);
    return;
  }
  // Stages 2-3: the bucket is complete when its lowest layer is (the walk goes down).
  const std::vector<int>& bucket = e_.buckets_[bucket_of_[l]];
  if (l != bucket.front()) return;
  const float* source = l == 0 ? dw_embedding_.as<float>() : bucket_buffer();
  e_.reducer_->start(bucket, source, DType::kF32);
  if (l != 0) {
    open_bucket_ = -1;
    if (!bucket_f32_[1].empty()) bucket_buf_ = 1 - bucket_buf_;
  }
}

}  // namespace ds::zero
