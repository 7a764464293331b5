// The one shard function: how a layer's flat range is split across data-parallel
// ranks. The range is padded to a multiple of the world size and cut into equal
// contiguous pieces, so every reduce-scatter and all-gather is balanced and a layer
// can be gathered alone. Rank r owns piece r of every layer (DESIGN.md).
#pragma once

#include <cstdint>
#include <vector>

#include "model/model_layout.h"

namespace ds::zero {

struct Shard {
  int64_t offset = 0;  // from the start of the padded range
  int64_t size = 0;    // equal for every rank; the last pieces may be partly padding
};

int64_t padded_size(int64_t elements, int world);
Shard shard_of(int64_t elements, int rank, int world);

// How every layer of a model is split for one rank.
struct LayerShard {
  int64_t layer_offset = 0;  // the layer's range in the full model layout
  int64_t numel = 0;         // its length there
  int64_t padded = 0;        // padded_size(numel, world)
  int64_t full_offset = 0;   // the layer's range in a full buffer of padded layers
  Shard own;                 // this rank's piece of the padded range
  int64_t local_offset = 0;  // where this rank keeps its piece among its pieces
  // The part of the own piece that holds real elements (the rest is padding).
  int64_t real_size() const;
};

struct Partition {
  int rank = 0;
  int world = 1;
  std::vector<LayerShard> layers;
  int64_t local_total = 0;  // elements of all own pieces together
  int64_t full_total = 0;   // elements of all padded layers together

  // `held`: which layers this rank holds (a pipeline stage's); the others get no
  // elements at all, so every buffer sized from the partition covers held layers only.
  // Empty: every layer.
  static Partition build(const model::ModelLayout& layout, int rank, int world,
                         const std::vector<bool>& held = {});
};

}  // namespace ds::zero
