// The monitors a ds_config can turn on (tensorboard, csv_monitor), behind one
// interface shaped like DeepSpeed's Monitor: a list of (name, value, step) events
// at a time. DeepSpeed names its events "Train/Samples/<metric>" and counts the
// step in samples (global_samples); the reporter does the same.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace ds::worker {

struct MonitorEvent {
  std::string name;  // "Train/Samples/train_loss"
  double value = 0;
  int64_t step = 0;
};

class Monitor {
 public:
  virtual ~Monitor() = default;
  // Records the events and flushes them, so that a crashed run keeps what it logged.
  virtual void write_events(std::span<const MonitorEvent> events) = 0;
};

}  // namespace ds::worker
