#include "comm/shm/shm_sync.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <ctime>

#include "comm/host_identity.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ds::comm::shm {
namespace {

constexpr int kYields = 64;
constexpr Milliseconds kLivenessEvery(100);

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, Milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000),
              static_cast<long>((timeout.count() % 1000) * 1000000)};
  // Not FUTEX_PRIVATE: the word is shared between processes.
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace

Sync::Sync(Header* header, RankControl* ranks, const GroupContext& context)
    : header_(header), ranks_(ranks), context_(context) {
  // With more ranks than cores, spinning only steals the time slice the peer needs.
  const unsigned cores = std::thread::hardware_concurrency();
  spins_ = cores != 0 && static_cast<unsigned>(context.size) > cores ? 0 : 4000;
}

void Sync::pause() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

void Sync::ring() {
  header_->doorbell.fetch_add(1, std::memory_order_seq_cst);
  if (header_->sleepers.load(std::memory_order_seq_cst) > 0) futex_wake_all(&header_->doorbell);
}

void Sync::sleep(uint32_t seen, Milliseconds max_wait) {
  header_->sleepers.fetch_add(1, std::memory_order_seq_cst);
  if (header_->doorbell.load(std::memory_order_seq_cst) == seen) {
    futex_wait(&header_->doorbell, seen, max_wait);
  }
  header_->sleepers.fetch_sub(1, std::memory_order_seq_cst);
}

void Sync::check_alive(int rank, std::string_view what) const {
  const RankControl& rc = ranks_[rank];
  if (!process_alive(rc.pid, rc.start_time)) {
    throw Error(fmt::format("{} on group '{}' failed: rank {} (pid {}) died", what, context_.name,
                            context_.global_rank(rank), rc.pid),
                "look at that rank's log for why it stopped");
  }
}

void Sync::slow_wait(const std::function<int()>& lagging, std::string_view what) {
  const auto start = Clock::now();
  auto next_check = start + kLivenessEvery;
  int yields = 0;
  while (true) {
    const uint32_t seen = doorbell();
    const int who = lagging();
    if (who < 0) return;
    if (yields < kYields) {
      ++yields;
      ::sched_yield();
      continue;
    }
    sleep(seen, Milliseconds(2));
    const auto now = Clock::now();
    if (now < next_check) continue;
    next_check = now + kLivenessEvery;
    const int still = lagging();
    if (still < 0) return;
    check_alive(still, what);
    if (now - start >= context_.timeout) {
      throw Error(fmt::format("{} on group '{}' failed: rank {} did not take part within {}", what,
                              context_.name, context_.global_rank(still),
                              format_duration(context_.timeout)),
                  "that rank is stuck or issued the group's collectives in another order; "
                  "DS_COLLECTIVE_TIMEOUT (seconds) sets how long to wait");
    }
  }
}

}  // namespace ds::comm::shm
