// How a run of layers [first, last) is cut for activation checkpointing, with the
// semantics of DeepSpeed's PipelineModule (`activation_checkpoint_interval` = k):
// chunks of k consecutive layers starting at the run's first layer (on a pipeline
// stage, its first local layer), the last one shorter. A checkpointed chunk keeps
// only its input during the forward; its backward recomputes the chunk's forward
// first.
//
// Which chunks: DeepSpeed's generic rule (PipelineModule._is_checkpointable without
// a model-specific override) — a chunk is checkpointed when one of its layers has
// parameters. Every layer of this model has parameters, so with k > 0 every chunk is
// checkpointed, the embedding's and the head's too. The embedding saves nothing, so
// its recompute is only a gather; the head keeps its one set of activations (see
// ActivationStore) either way, so checkpointing its chunk saves the memory of the
// blocks in that chunk at the price of recomputing the LM head matmul once.
#pragma once

#include <algorithm>

#include "model/model_layout.h"

namespace ds::model {

struct Chunk {
  int first = 0;
  int last = 0;  // exclusive
  bool checkpointed = false;
};

class ChunkPlan {
 public:
  // `interval` 0: no checkpointing, the whole run is one plain chunk.
  ChunkPlan(const ModelLayout& layout, int first, int last, int interval)
      : layout_(layout), first_(first), last_(last), interval_(interval) {}

  int count() const {
    if (last_ <= first_) return 0;
    return interval_ == 0 ? 1 : (last_ - first_ + interval_ - 1) / interval_;
  }

  Chunk operator[](int i) const {
    Chunk c;
    c.first = interval_ == 0 ? first_ : first_ + i * interval_;
    c.last = interval_ == 0 ? last_ : std::min(c.first + interval_, last_);
    for (int l = c.first; interval_ > 0 && l < c.last; ++l) {
      if (layout_.layers[l].numel > 0) c.checkpointed = true;
    }
    return c;
  }

 private:
  const ModelLayout& layout_;
  int first_, last_, interval_;
};

}  // namespace ds::model
