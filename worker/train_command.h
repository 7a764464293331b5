// `dsworker train.cfg`: train with the configuration in one process.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>

#include "worker/trainer.h"

namespace ds::worker {

void train_command(const TrainOptions& options);

// `dsworker train.cfg --print-schedule [--world-size N]`: the pipeline partition and each
// stage's 1F1B instructions, without training. The world size is N, else the launcher's,
// else pipeline.stages (one replica).
void print_schedule_command(const std::string& config, std::optional<int64_t> world_size,
                            std::ostream& out);

}  // namespace ds::worker
