// The layout of a shared-memory group's segment. Counters that different ranks write live on
// separate cache lines; data slots are page-aligned.
//
//   Header | RankControl[n] | Channel[n*n] | SlotDesc[n*n*kP2pSlots]
//   | collective input slots [n][kSlots][chunk] | collective output slots [kSlots][chunk]
//   | p2p data [n*n][kP2pSlots][p2p_chunk]
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ds::comm::shm {

// Collective steps in flight: a rank may run this many chunks ahead of the slowest.
inline constexpr uint64_t kSlots = 4;
// Chunks buffered per point-to-point channel.
inline constexpr uint64_t kP2pSlots = 4;
inline constexpr uint64_t kMagic = 0x6473'746d'5348'4d31ULL;  // "dstmSHM1"

struct alignas(64) Counter {
  std::atomic<uint64_t> value{0};
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared counters need lock-free");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "shared doorbell needs lock-free");

struct Header {
  uint64_t magic;
  uint32_t size;
  uint32_t chunk_bytes;
  uint32_t p2p_chunk_bytes;
  // Bumped on every publish; waiters sleep on it with futex once spinning stops paying.
  alignas(64) std::atomic<uint32_t> doorbell;
  alignas(64) std::atomic<uint32_t> sleepers;
};

// One rank's progress through the collective sequence: step s is published (inputs staged),
// reduced (its share of the result staged) and done (it read everything it needed).
struct RankControl {
  Counter published;
  Counter reduced;
  Counter done;
  // What the rank is doing at each slot's step: op, dtype, count. Mismatches are caught.
  alignas(64) std::atomic<uint64_t> signature[kSlots];
  int32_t pid;
  unsigned long long start_time;
};

// One direction between two ranks: head counts chunks written, tail chunks consumed.
struct Channel {
  Counter head;
  Counter tail;
};

struct SlotDesc {
  int64_t tag;
  uint64_t total;   // message bytes
  uint64_t offset;  // of this chunk in the message
  uint64_t len;
};

struct Layout {
  int n;
  size_t chunk;      // collective bytes per rank per step
  size_t p2p_chunk;  // bytes per p2p slot
  size_t ranks_off, channels_off, descs_off, in_off, out_off, p2p_off, total;

  Layout(int ranks, size_t chunk_bytes, size_t p2p_chunk_bytes);
};

// Chunk sizes that keep a group's segment modest as groups grow (docker's /dev/shm is 64 MiB
// by default); large enough that 64 MiB transfers run at memory speed.
size_t default_chunk_bytes(int ranks);
size_t default_p2p_chunk_bytes(int ranks);

}  // namespace ds::comm::shm
