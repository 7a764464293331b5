// Work: the handle of a collective or point-to-point operation, as in c10d's Work.hpp.
// Synchronous calls return a Work that is already complete; asynchronous ones return one to
// wait on before touching the tensors again.
#pragma once

#include <chrono>
#include <exception>
#include <future>
#include <memory>
#include <string>

#include "comm/store.h"

namespace ds::comm {

class Work {
 public:
  static constexpr Milliseconds kNoTimeout = Milliseconds::max();

  virtual ~Work() = default;
  // Blocks until the operation finished and rethrows its error. With a timeout, throws
  // ds::Error when it is still running by then (the operation itself keeps its own,
  // backend-enforced collective timeout).
  virtual void wait(Milliseconds timeout = kNoTimeout) = 0;
  virtual bool is_completed() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

// A Work completed by whoever runs the operation (an executor thread, a progress engine).
class PendingWork : public Work {
 public:
  explicit PendingWork(std::string what) : what_(std::move(what)), future_(promise_.get_future()) {}

  void wait(Milliseconds timeout = kNoTimeout) override;
  bool is_completed() override;

  void complete() { promise_.set_value(); }
  void fail(std::exception_ptr error) { promise_.set_exception(std::move(error)); }

 private:
  std::string what_;
  std::promise<void> promise_;
  std::shared_future<void> future_;
};

// The Work of an operation that already ran.
WorkPtr completed_work();

}  // namespace ds::comm
