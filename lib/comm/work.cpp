#include "comm/work.h"

namespace ds::comm {
namespace {

class DoneWork : public Work {
 public:
  void wait(Milliseconds) override {}
  bool is_completed() override { return true; }
};

}  // namespace

void PendingWork::wait(Milliseconds timeout) {
  if (timeout != kNoTimeout && future_.wait_for(timeout) == std::future_status::timeout) {
    throw Error(fmt::format("{} did not finish within {}", what_, format_duration(timeout)),
                "a peer rank may be stuck or slower; the operation itself fails at the group's "
                "collective timeout (DS_COLLECTIVE_TIMEOUT)");
  }
  future_.get();
}

bool PendingWork::is_completed() {
  return future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

WorkPtr completed_work() {
  static const WorkPtr done = std::make_shared<DoneWork>();
  return done;
}

}  // namespace ds::comm
