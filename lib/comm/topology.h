// The pipe x data grid of DESIGN.md: rank = stage * data + dp_index. Ranks of one stage form a
// data-parallel group (they hold the same layers and reduce gradients together); ranks with
// one dp_index form a pipeline (they pass activations stage to stage).
#pragma once

#include <memory>
#include <vector>

#include "comm/process_group.h"

namespace ds::comm {

struct Topology {
  int pipe = 1;  // pipeline stages
  int data = 1;  // data-parallel ranks per stage

  // Throws UsageError unless `pipe_stages` divides `world_size`.
  static Topology make(int world_size, int pipe_stages);

  int world_size() const { return pipe * data; }
  int rank_of(int stage, int dp_index) const { return stage * data + dp_index; }
  int stage_of(int rank) const { return rank / data; }
  int dp_index_of(int rank) const { return rank % data; }
  // The world ranks of stage `stage`'s data-parallel group, ascending.
  std::vector<int> data_group_ranks(int stage) const;
  // The world ranks of dp index `dp_index`'s pipeline, stage 0 first.
  std::vector<int> pipe_group_ranks(int dp_index) const;
};

struct TopologyGroups {
  std::shared_ptr<ProcessGroup> data;  // this rank's data-parallel group ("data.<stage>")
  std::shared_ptr<ProcessGroup> pipe;  // this rank's pipeline ("pipe.<dp_index>")
};

// Creates every data and pipeline group (each rank is in one of each). Collective over `world`.
TopologyGroups make_topology_groups(ProcessGroup& world, const Topology& topology);

}  // namespace ds::comm
