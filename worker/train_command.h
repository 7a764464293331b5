// `dsworker train.cfg`: train with the configuration in one process.
#pragma once

#include "worker/trainer.h"

namespace ds::worker {

void train_command(const TrainOptions& options);

}  // namespace ds::worker
