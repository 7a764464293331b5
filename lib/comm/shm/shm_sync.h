// Waiting in shared memory without hanging forever. A waiter spins briefly (ranks on their own
// cores answer within microseconds), then yields (more ranks than cores), then sleeps on the
// segment's futex doorbell. While asleep it checks every 100 ms that the rank it waits for is
// still alive, and gives up after the collective timeout without progress.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "comm/process_group.h"
#include "comm/shm/shm_layout.h"

namespace ds::comm::shm {

class Sync {
 public:
  Sync(Header* header, RankControl* ranks, const GroupContext& context);

  // Wakes sleeping waiters after a counter changed.
  void ring();

  // Returns once `lagging()` returns -1; `lagging` names a group rank not there yet.
  // `what` describes the operation for errors ("allreduce").
  template <typename F>
  void wait(F&& lagging, std::string_view what) {
    for (int i = 0; i < spins_; ++i) {
      if (lagging() < 0) return;
      pause();
    }
    slow_wait(std::function<int()>(std::forward<F>(lagging)), what);
  }

  // The doorbell value, read before scanning for work, to sleep without missing a ring.
  uint32_t doorbell() const { return header_->doorbell.load(std::memory_order_acquire); }
  // Sleeps until the doorbell moves past `seen` or `max_wait` passes.
  void sleep(uint32_t seen, Milliseconds max_wait);
  // Throws if group rank `rank`'s process died.
  void check_alive(int rank, std::string_view what) const;

 private:
  static void pause();
  void slow_wait(const std::function<int()>& lagging, std::string_view what);

  Header* header_;
  RankControl* ranks_;
  const GroupContext& context_;
  int spins_;
};

}  // namespace ds::comm::shm
