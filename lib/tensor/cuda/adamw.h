// The optimizer updates of tensor/cpu/optimizer_kernels.h as fused kernels over flat fp32
// arrays on the device: Adam/AdamW (DeepSpeed FusedAdam semantics: bias correction always
// on; decoupled weight decay p -= lr*wd*p for AdamW, or L2 g += wd*p before the moments) and
// torch's SGD.
//
// The scalar coefficients are computed on the host exactly as cpu::adam_step computes them,
// and the kernel rounds every operation separately (no FMA contraction), in cpu::adam_step's
// order, so a GPU step is meant to be bitwise the CPU step.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tensor/optimizer_options.h"

namespace ds::tensor::cuda {

// Updates params[0, n), exp_avg[0, n) and exp_avg_sq[0, n) from the gradient io gives (and
// writes the parameters' 16-bit copy where it has one, optimizer_options.h). step: the number
// of this step, 1 for the first (throws ds::Error below 1). lr is this step's rate.
void adam_step(float* params, const StepIo& io, float* exp_avg, float* exp_avg_sq, int64_t n,
               double lr, int64_t step, const AdamOptions& options, cudaStream_t stream);

// torch.optim.SGD's update, as tensor/cpu/optimizer_kernels.h's sgd_step: momentum_buffer is
// nullptr without momentum and becomes a copy of the gradient at step 1.
void sgd_step(float* params, const StepIo& io, float* momentum_buffer, int64_t n, double lr,
              int64_t step, const SgdOptions& options, cudaStream_t stream);

}  // namespace ds::tensor::cuda
