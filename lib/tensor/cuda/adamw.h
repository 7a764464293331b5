// The Adam/AdamW update of optim::Adam (DeepSpeed FusedAdam semantics: bias correction always
// on; decoupled weight decay p -= lr*wd*p for AdamW, or L2 g += wd*p before the moments) as
// one fused kernel over flat fp32 arrays on the device.
//
// The scalar coefficients are computed on the host exactly as optim::Adam::step computes them,
// and the kernel rounds every operation separately (no FMA contraction), in optim::Adam's
// order, so a GPU step is meant to be bitwise the CPU step.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ds::tensor::cuda {

// Updates params[0, n), exp_avg[0, n) and exp_avg_sq[0, n) from grads[0, n). step: the
// number of this step, 1 for the first (throws ds::Error below 1). lr is this step's rate.
void adam_step(float* params, const float* grads, float* exp_avg, float* exp_avg_sq, int64_t n,
               double lr, int64_t step, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled_weight_decay, cudaStream_t stream);

}  // namespace ds::tensor::cuda
