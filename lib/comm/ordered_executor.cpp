#include "comm/ordered_executor.h"

namespace ds::comm {

OrderedExecutor::~OrderedExecutor() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  turn_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OrderedExecutor::finish_turn() {
  {
    std::lock_guard lock(mutex_);
    ++serving_;
  }
  turn_.notify_all();
}

WorkPtr OrderedExecutor::submit(std::string what, std::function<void()> job, bool async_op) {
  std::unique_lock lock(mutex_);
  const uint64_t ticket = next_ticket_++;
  if (async_op) {
    auto work = std::make_shared<PendingWork>(std::move(what));
    queue_.push_back({ticket, std::move(job), work});
    if (!thread_.joinable()) thread_ = std::thread([this] { run_queue(); });
    lock.unlock();
    turn_.notify_all();
    return work;
  }
  turn_.wait(lock, [&] { return serving_ == ticket; });
  lock.unlock();
  try {
    job();
  } catch (...) {
    finish_turn();
    throw;
  }
  finish_turn();
  return completed_work();
}

void OrderedExecutor::run_queue() {
  std::unique_lock lock(mutex_);
  while (true) {
    turn_.wait(lock, [&] {
      return (stopping_ && queue_.empty()) ||
             (!queue_.empty() && queue_.front().ticket == serving_);
    });
    if (queue_.empty()) return;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    try {
      job.fn();
      job.work->complete();
    } catch (...) {
      job.work->fail(std::current_exception());
    }
    lock.lock();
    ++serving_;
    turn_.notify_all();
  }
}

}  // namespace ds::comm
