#include "comm/topology.h"

#include <fmt/format.h>

namespace ds::comm {

Topology Topology::make(int world_size, int pipe_stages) {
  if (pipe_stages < 1 || world_size < 1 || world_size % pipe_stages != 0) {
    throw UsageError(
        fmt::format("{} pipeline stages do not divide {} ranks", pipe_stages, world_size),
        "the world is pipe x data: choose a stage count that divides WORLD_SIZE");
  }
  return {pipe_stages, world_size / pipe_stages};
}

std::vector<int> Topology::data_group_ranks(int stage) const {
  std::vector<int> ranks;
  for (int d = 0; d < data; ++d) ranks.push_back(rank_of(stage, d));
  return ranks;
}

std::vector<int> Topology::pipe_group_ranks(int dp_index) const {
  std::vector<int> ranks;
  for (int s = 0; s < pipe; ++s) ranks.push_back(rank_of(s, dp_index));
  return ranks;
}

TopologyGroups make_topology_groups(ProcessGroup& world, const Topology& topology) {
  DS_CHECK(world.size() == topology.world_size(), "topology {}x{} for a world of {}", topology.pipe,
           topology.data, world.size());
  TopologyGroups groups;
  // Same calls in the same order on every rank: new_group is collective over the world.
  for (int s = 0; s < topology.pipe; ++s) {
    auto g = world.new_group(topology.data_group_ranks(s), fmt::format("data.{}", s));
    if (g) groups.data = std::move(g);
  }
  for (int d = 0; d < topology.data; ++d) {
    auto g = world.new_group(topology.pipe_group_ranks(d), fmt::format("pipe.{}", d));
    if (g) groups.pipe = std::move(g);
  }
  return groups;
}

}  // namespace ds::comm
