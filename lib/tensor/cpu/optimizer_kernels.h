// The optimizer updates on the CPU, element by element over flat fp32 arrays, so that any
// contiguous part of a state can be stepped on its own (an engine steps layer by layer):
// Adam/AdamW as DeepSpeed's FusedAdam (bias correction always on) and SGD as torch.optim.SGD.
// Per-element math is float, with the scalar coefficients computed in double and rounded once,
// the way FusedAdam's kernel receives them from Python; this keeps the results within a few
// ulps of torch.optim.AdamW / Adam / SGD, and bit for bit equal to the CUDA kernels.
#pragma once

#include <cstdint>

#include "tensor/optimizer_options.h"

namespace ds::tensor::cpu {

// `step` counts applied steps from 1 (the bias correction). The gradient and the 16-bit copy of
// the parameters as `io` says (optimizer_options.h).
void adam_step(float* params, const StepIo& io, float* exp_avg, float* exp_avg_sq, int64_t n,
               double lr, int64_t step, const AdamOptions& options);
// momentum_buffer: nullptr without momentum; at step 1 it becomes a copy of the gradient
// (torch creates it so, without dampening).
void sgd_step(float* params, const StepIo& io, float* momentum_buffer, int64_t n, double lr,
              int64_t step, const SgdOptions& options);

}  // namespace ds::tensor::cpu
