// Point-to-point messages over a shared-memory group: one ring of chunks per ordered pair of
// ranks, moved by one progress thread. The thread advances every pending send and receive a
// little at a time, so a rank that sends to a peer while the peer sends to it never deadlocks,
// whatever the message sizes.
#pragma once

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/shm/shm_layout.h"
#include "comm/shm/shm_sync.h"

namespace ds::comm::shm {

class P2p {
 public:
  P2p(char* base, const Layout& layout, Sync& sync, const GroupContext& context);
  ~P2p();

  std::shared_ptr<PendingWork> send(TensorRef tensor, int dst, int tag);
  std::shared_ptr<PendingWork> recv(TensorRef tensor, int src, int tag);

 private:
  struct Op {
    TensorRef tensor;
    int peer;
    int tag;
    bool started = false;
    size_t done = 0;
    Clock::time_point last_progress;
    Clock::time_point next_check;
    std::shared_ptr<PendingWork> work;
  };

  void loop();
  // Moves what it can without blocking; true if anything moved. Throws on a protocol error.
  bool advance_send(Op& op);
  bool advance_recv(Op& op);
  std::shared_ptr<PendingWork> post(std::vector<std::deque<Op>>& queues, TensorRef t, int peer,
                                    int tag, const char* what);

  Channel& channel(int from, int to) const;
  SlotDesc& desc(int from, int to, uint64_t slot) const;
  char* data(int from, int to, uint64_t slot) const;

  char* base_;
  const Layout& layout_;
  Sync& sync_;
  const GroupContext& context_;
  std::mutex mutex_;
  std::vector<std::deque<Op>> sends_;  // by peer
  std::vector<std::deque<Op>> recvs_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace ds::comm::shm
