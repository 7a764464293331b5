// Gradient clipping by the global norm, as DeepSpeed's engine does it.
#pragma once

#include <cstdint>
#include <span>

namespace ds::optim {

// The factor gradients are multiplied by: max_norm / (total_norm + 1e-6) when that is
// below 1, else 1 (no clipping). max_norm <= 0 disables clipping (DeepSpeed's
// gradient_clipping: 0). The caller checks for overflow first: a non-finite norm
// gives 0 or NaN here, as it would in DeepSpeed.
double clip_coefficient(double total_norm, double max_norm);

// Σ x², accumulated in double in fixed blocks whose partial sums are added in order, so
// the result is the same for any number of OpenMP threads. Sum these over ranks and
// arrays, then take the square root, for a distributed global norm.
double sum_of_squares(const float* x, int64_t n);

// sqrt(Σ over arrays of Σ x²): the global L2 norm of several gradient arrays.
double global_norm(std::span<const std::span<const float>> arrays);

// x *= coefficient (skipped when it is exactly 1).
void scale_in_place(float* x, int64_t n, double coefficient);

}  // namespace ds::optim
