#include "comm/rendezvous.h"

#include <fmt/ranges.h>

#include <algorithm>

#include "comm/tcp_store_server.h"

namespace ds::comm {
namespace {

std::string arrived_key(int rank) { return fmt::format("rdzv/rank/{}", rank); }

}  // namespace

std::string format_ranks(const std::vector<int>& ranks) {
  constexpr size_t kShown = 16;
  if (ranks.size() == 1) return fmt::format("rank {}", ranks[0]);
  std::vector<int> shown(ranks.begin(), ranks.begin() + std::min(ranks.size(), kShown));
  std::string text = fmt::format("ranks {}", fmt::join(shown, ", "));
  if (ranks.size() > kShown) text += fmt::format(", ... and {} more", ranks.size() - kShown);
  return text;
}

void rendezvous(Store& store, int rank, int world_size, Milliseconds timeout) {
  DS_CHECK(rank >= 0 && rank < world_size, "rank {} outside world of {}", rank, world_size);
  if (store.add(fmt::format("rdzv/claims/{}", rank), 1) > 1) {
    throw UsageError(fmt::format("two processes of this run claim rank {}", rank),
                     "each process needs its own RANK; check how the ranks were started");
  }
  store.set(arrived_key(rank), std::to_string(world_size));

  std::vector<std::string> keys;
  keys.reserve(static_cast<size_t>(world_size));
  for (int r = 0; r < world_size; ++r) keys.push_back(arrived_key(r));
  try {
    store.wait(keys, timeout);
  } catch (const StoreTimeout& e) {
    std::vector<int> missing;
    for (const auto& key : e.missing_keys()) missing.push_back(std::stoi(key.substr(10)));
    std::sort(missing.begin(), missing.end());
    throw Error(fmt::format("{} of {} did not arrive within {}", format_ranks(missing), world_size,
                            format_duration(timeout)),
                "those ranks failed before the rendezvous or were never started: look at their "
                "logs; a slow start needs a longer DS_RENDEZVOUS_TIMEOUT (seconds)");
  }
  // Rank 0's view of the world size is the run's; a rank started with another one would
  // wait for ranks that do not exist, or leave some out.
  const std::string theirs = store.get(arrived_key(0));
  if (theirs != std::to_string(world_size)) {
    throw UsageError(
        fmt::format("this rank has WORLD_SIZE={} but rank 0 has WORLD_SIZE={}", world_size, theirs),
        "every rank must be started with the same WORLD_SIZE");
  }
}

std::vector<int> gone_ranks(Store& root_store, const std::vector<int>& ranks) {
  std::vector<int> gone;
  for (int r : ranks) {
    if (root_store.check({gone_rank_key(r)})) gone.push_back(r);
  }
  return gone;
}

}  // namespace ds::comm
