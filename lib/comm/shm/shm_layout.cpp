#include "comm/shm/shm_layout.h"

#include <algorithm>

namespace ds::comm::shm {
namespace {

size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

}  // namespace

Layout::Layout(int ranks, size_t chunk_bytes, size_t p2p_chunk_bytes)
    : n(ranks), chunk(chunk_bytes), p2p_chunk(p2p_chunk_bytes) {
  const auto nn = static_cast<size_t>(n);
  ranks_off = round_up(sizeof(Header), 64);
  channels_off = round_up(ranks_off + nn * sizeof(RankControl), 64);
  descs_off = round_up(channels_off + nn * nn * sizeof(Channel), 64);
  in_off = round_up(descs_off + nn * nn * kP2pSlots * sizeof(SlotDesc), 4096);
  out_off = in_off + nn * kSlots * chunk;
  p2p_off = out_off + kSlots * chunk;
  total = round_up(p2p_off + nn * nn * kP2pSlots * p2p_chunk, 4096);
}

size_t default_chunk_bytes(int ranks) {
  if (ranks <= 4) return 1u << 20;
  if (ranks <= 8) return 512u << 10;
  return 256u << 10;
}

size_t default_p2p_chunk_bytes(int ranks) {
  const size_t per_peer = (1u << 20) / static_cast<size_t>(std::max(1, ranks - 1));
  return std::clamp<size_t>(per_peer / 4096 * 4096, 16u << 10, 256u << 10);
}

}  // namespace ds::comm::shm
