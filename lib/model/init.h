// GPT-2 initialisation of the flat parameter buffer.
#pragma once

#include <cstdint>

#include "model/model_layout.h"

namespace ds::model {

// Fills `flat` (layout.total floats; padding left zero). Each parameter draws from
// its own stream, seeded by (seed, parameter name), so a parameter's initial
// values do not depend on the layout, the rank or what else the model holds.
void init_weights(const ModelLayout& layout, const config::ModelConfig& model, uint64_t seed,
                  float* flat);

}  // namespace ds::model
