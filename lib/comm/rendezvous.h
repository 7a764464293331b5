// Rendezvous: every rank registers in the Store and waits for all the others. A rank that never
// arrives makes everyone else fail after the timeout with a message naming the missing ranks.
#pragma once

#include <string>
#include <vector>

#include "comm/store.h"

namespace ds::comm {

// Registers `rank` and returns once all `world_size` ranks have; throws Error naming the
// ranks that did not arrive within `timeout`, two processes that claim one rank, or ranks
// started with a different WORLD_SIZE.
void rendezvous(Store& store, int rank, int world_size, Milliseconds timeout);

// "rank 3", "ranks 2, 3", "ranks 0, 1, 2, ... and 97 more".
std::string format_ranks(const std::vector<int>& ranks);

// Which of `ranks` (world ranks) have lost their store connection, per the server's
// "__ds/gone/<rank>" keys. Used to name the peer that died when a collective fails.
std::vector<int> gone_ranks(Store& root_store, const std::vector<int>& ranks);

}  // namespace ds::comm
