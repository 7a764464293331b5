#include "zero/shard.h"

#include <algorithm>

#include "util/error.h"

namespace ds::zero {

int64_t padded_size(int64_t elements, int world) {
  DS_CHECK(world >= 1 && elements >= 0, "bad shard request: {} elements over {} ranks", elements,
           world);
  return (elements + world - 1) / world * world;
}

Shard shard_of(int64_t elements, int rank, int world) {
  DS_CHECK(rank >= 0 && rank < world, "rank {} outside a world of {}", rank, world);
  const int64_t size = padded_size(elements, world) / world;
  return {size * rank, size};
}

int64_t LayerShard::real_size() const {
  return std::clamp<int64_t>(numel - own.offset, 0, own.size);
}

Partition Partition::build(const model::ModelLayout& layout, int rank, int world,
                           const std::vector<bool>& held) {
  Partition p;
  p.rank = rank;
  p.world = world;
  for (size_t l = 0; l < layout.layers.size(); ++l) {
    const model::LayerSpec& spec = layout.layers[l];
    LayerShard s;
    s.layer_offset = spec.offset;
    s.numel = held.empty() || held[l] ? spec.numel : 0;
    s.padded = padded_size(s.numel, world);
    s.own = shard_of(s.numel, rank, world);
    s.local_offset = p.local_total;
    s.full_offset = p.full_total;
    p.local_total += s.own.size;
    p.full_total += s.padded;
    p.layers.push_back(s);
  }
  return p;
}

}  // namespace ds::zero
