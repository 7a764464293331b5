#include <catch2/catch.hpp>

#include "config/model_config.h"
#include "zero/shard.h"

using ds::zero::padded_size;
using ds::zero::Partition;
using ds::zero::shard_of;

TEST_CASE("shard_of splits a padded range into equal contiguous pieces", "[zero][shard]") {
  CHECK(padded_size(10, 4) == 12);
  CHECK(padded_size(12, 4) == 12);
  CHECK(padded_size(0, 3) == 0);
  for (int rank = 0; rank < 4; ++rank) {
    const auto s = shard_of(10, rank, 4);
    CHECK(s.size == 3);
    CHECK(s.offset == 3 * rank);
  }
  CHECK(shard_of(7, 0, 1).size == 7);
  CHECK_THROWS(shard_of(7, 2, 2));
}

TEST_CASE("a partition gives every rank one piece of every layer", "[zero][shard]") {
  ds::config::ModelConfig m;
  m.n_layer = 3;
  const auto layout = ds::model::build_layout(m);
  for (int world : {1, 2, 3, 4, 8}) {
    int64_t real = 0;
    for (int rank = 0; rank < world; ++rank) {
      const Partition p = Partition::build(layout, rank, world);
      REQUIRE(p.layers.size() == layout.layers.size());
      int64_t local = 0, full = 0;
      for (const auto& s : p.layers) {
        CHECK(s.local_offset == local);
        CHECK(s.full_offset == full);
        CHECK(s.padded % world == 0);
        CHECK(s.own.size * world == s.padded);
        local += s.own.size;
        full += s.padded;
        real += s.real_size();
      }
      CHECK(p.local_total == local);
      CHECK(p.full_total == full);
    }
    CHECK(real == layout.total);  // the real parts of all pieces cover every element once
  }
}
