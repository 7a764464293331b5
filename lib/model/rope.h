// Rotary position embedding frequencies, as Hugging Face's Llama computes them: channel
// pair i of a head of `hs` channels turns at theta^(-2i/hs) radians per position, and
// Llama 3's rope_scaling stretches the long wavelengths (_compute_llama3_parameters).
#pragma once

#include <optional>
#include <vector>

#include "config/model_config.h"

namespace ds::model {

// hs/2 inverse frequencies.
std::vector<double> rope_inverse_frequencies(int hs, double theta,
                                             const std::optional<config::RopeScaling>& scaling);

}  // namespace ds::model
