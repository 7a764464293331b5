// Runs a group's collectives strictly in the order they were issued. A synchronous call runs
// on the caller's thread (no hand-off latency) once every earlier call has finished; an
// asynchronous one runs on the executor's thread. Order is what makes collectives meet:
// each rank must run the group's operations in the same sequence.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "comm/work.h"

namespace ds::comm {

class OrderedExecutor {
 public:
  OrderedExecutor() = default;
  ~OrderedExecutor();
  OrderedExecutor(const OrderedExecutor&) = delete;
  OrderedExecutor& operator=(const OrderedExecutor&) = delete;

  // Runs `job` in its turn. Synchronous: returns a completed Work or throws the job's error.
  WorkPtr submit(std::string what, std::function<void()> job, bool async_op);

 private:
  struct Job {
    uint64_t ticket;
    std::function<void()> fn;
    std::shared_ptr<PendingWork> work;
  };
  void run_queue();
  void finish_turn();

  std::mutex mutex_;
  std::condition_variable turn_;
  uint64_t next_ticket_ = 0;
  uint64_t serving_ = 0;  // the ticket allowed to run now
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::thread thread_;  // started on the first asynchronous job
};

}  // namespace ds::comm
