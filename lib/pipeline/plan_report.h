// The pipeline plan of a config in words: which layers each stage holds and the
// instructions it runs for one batch (`dsworker train.cfg --print-schedule`).
#pragma once

#include <iosfwd>

#include "config/train_config.h"

namespace ds::pipeline {

// Partitions the config's model and prints, for every stage, its layers with their parameter
// counts and its train schedule step by step. Throws ds::UsageError for a partition that
// cannot be made.
void print_pipeline_plan(const config::TrainConfig& config, std::ostream& out);

}  // namespace ds::pipeline
