// A plain TCP stream between two ranks over the interface the run uses: the yardstick that
// dsbench comm prints beside the collectives, measured in the same run.
#pragma once

#include <cstddef>

#include "comm/process_group.h"
#include "comm/store.h"

namespace ds::bench {

struct TcpStreamResult {
  double gbps = 0;      // GB/s (1e9 bytes per second) received
  std::string address;  // where rank 0 listened
};

// Rank 1 streams `bytes` to rank 0 `repeats` times (after one warm-up pass) in 1 MiB writes;
// rank 0 times the receiving side. Collective over the group's ranks 0 and 1 (the others
// return at once); rank 0 gets the result. `address` is rank 0's address toward the run.
TcpStreamResult measure_tcp_stream(comm::Store& store, int rank, const std::string& address,
                                   size_t bytes, int repeats);

}  // namespace ds::bench
