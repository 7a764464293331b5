#include "comm/shm/shm_p2p.h"

#include <cstring>

namespace ds::comm::shm {

P2p::P2p(char* base, const Layout& layout, Sync& sync, const GroupContext& context)
    : base_(base),
      layout_(layout),
      sync_(sync),
      context_(context),
      sends_(static_cast<size_t>(layout.n)),
      recvs_(static_cast<size_t>(layout.n)) {}

P2p::~P2p() {
  stopping_ = true;
  sync_.ring();
  if (thread_.joinable()) thread_.join();
  for (auto* queues : {&sends_, &recvs_}) {
    for (auto& q : *queues) {
      for (auto& op : q) {
        op.work->fail(std::make_exception_ptr(Error(
            fmt::format("group '{}' was destroyed with a message still pending", context_.name))));
      }
    }
  }
}

Channel& P2p::channel(int from, int to) const {
  auto* channels = reinterpret_cast<Channel*>(base_ + layout_.channels_off);
  return channels[from * layout_.n + to];
}

SlotDesc& P2p::desc(int from, int to, uint64_t slot) const {
  auto* descs = reinterpret_cast<SlotDesc*>(base_ + layout_.descs_off);
  return descs[(static_cast<size_t>(from * layout_.n + to)) * kP2pSlots + slot];
}

char* P2p::data(int from, int to, uint64_t slot) const {
  return base_ + layout_.p2p_off +
         ((static_cast<size_t>(from * layout_.n + to)) * kP2pSlots + slot) * layout_.p2p_chunk;
}

std::shared_ptr<PendingWork> P2p::post(std::vector<std::deque<Op>>& queues, TensorRef t, int peer,
                                       int tag, const char* what) {
  auto work = std::make_shared<PendingWork>(fmt::format("{} with rank {} on group '{}'", what,
                                                        context_.global_rank(peer), context_.name));
  {
    std::lock_guard lock(mutex_);
    queues[static_cast<size_t>(peer)].push_back({t, peer, tag, false, 0, Clock::now(), {}, work});
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  }
  sync_.ring();
  return work;
}

std::shared_ptr<PendingWork> P2p::send(TensorRef t, int dst, int tag) {
  return post(sends_, t, dst, tag, "send");
}

std::shared_ptr<PendingWork> P2p::recv(TensorRef t, int src, int tag) {
  return post(recvs_, t, src, tag, "recv");
}

bool P2p::advance_send(Op& op) {
  const int me = context_.rank;
  Channel& ch = channel(me, op.peer);
  const size_t total = op.tensor.bytes();
  bool moved = false;
  while (!op.started || op.done < total) {
    const uint64_t head = ch.head.value.load(std::memory_order_relaxed);
    const uint64_t tail = ch.tail.value.load(std::memory_order_acquire);
    if (head - tail >= kP2pSlots) break;
    const uint64_t slot = head % kP2pSlots;
    const size_t len = std::min(layout_.p2p_chunk, total - op.done);
    desc(me, op.peer, slot) = {op.tag, total, op.done, len};
    std::memcpy(data(me, op.peer, slot), static_cast<char*>(op.tensor.data) + op.done, len);
    ch.head.value.store(head + 1, std::memory_order_release);
    op.done += len;
    op.started = true;
    moved = true;
  }
  return moved;
}

bool P2p::advance_recv(Op& op) {
  const int me = context_.rank;
  Channel& ch = channel(op.peer, me);
  const size_t total = op.tensor.bytes();
  bool moved = false;
  while (!op.started || op.done < total) {
    const uint64_t tail = ch.tail.value.load(std::memory_order_relaxed);
    const uint64_t head = ch.head.value.load(std::memory_order_acquire);
    if (head == tail) break;
    const uint64_t slot = tail % kP2pSlots;
    const SlotDesc d = desc(op.peer, me, slot);
    if (d.tag != op.tag || d.total != total || d.offset != op.done || d.len > total - op.done) {
      throw Error(
          fmt::format("recv on group '{}': rank {} sent a message with tag {} of {} "
                      "bytes, but this rank expects tag {} of {} bytes from it",
                      context_.name, context_.global_rank(op.peer), d.tag, d.total, op.tag, total),
          "messages between two ranks are received in the order they were sent; post "
          "the recvs in that order with matching tags and sizes");
    }
    std::memcpy(static_cast<char*>(op.tensor.data) + op.done, data(op.peer, me, slot), d.len);
    ch.tail.value.store(tail + 1, std::memory_order_release);
    op.done += d.len;
    op.started = true;
    moved = true;
  }
  return moved;
}

void P2p::loop() {
  while (!stopping_) {
    const uint32_t seen = sync_.doorbell();
    bool moved = false;
    bool pending = false;
    std::vector<std::pair<std::shared_ptr<PendingWork>, std::exception_ptr>> finished;
    {
      std::lock_guard lock(mutex_);
      const auto now = Clock::now();
      for (int peer = 0; peer < layout_.n; ++peer) {
        for (bool sending : {true, false}) {
          auto& q = (sending ? sends_ : recvs_)[static_cast<size_t>(peer)];
          while (!q.empty()) {
            Op& op = q.front();
            try {
              if (sending ? advance_send(op) : advance_recv(op)) {
                moved = true;
                op.last_progress = now;
              } else if (now - op.last_progress > Milliseconds(100) && now >= op.next_check) {
                op.next_check = now + Milliseconds(100);  // /proc reads are not free
                sync_.check_alive(peer, sending ? "send" : "recv");
                if (now - op.last_progress > context_.timeout) {
                  throw Error(
                      fmt::format("{} on group '{}': rank {} made no progress within {}",
                                  sending ? "send" : "recv", context_.name,
                                  context_.global_rank(peer), format_duration(context_.timeout)),
                      "the peer is stuck or never posted the matching operation");
                }
              }
            } catch (...) {
              finished.emplace_back(op.work, std::current_exception());
              q.pop_front();
              continue;
            }
            if (op.started && op.done == op.tensor.bytes()) {
              finished.emplace_back(op.work, nullptr);
              q.pop_front();
              continue;
            }
            pending = true;
            break;
          }
        }
      }
    }
    if (moved) sync_.ring();
    for (auto& [work, error] : finished) {
      if (error) {
        work->fail(error);
      } else {
        work->complete();
      }
    }
    if (!moved && finished.empty()) sync_.sleep(seen, Milliseconds(pending ? 2 : 50));
  }
}

}  // namespace ds::comm::shm
