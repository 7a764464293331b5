// The hyper-parameters of the optimizer updates, shared by the optimizers (optim/optimizer.h)
// and the update kernels every Ops implements (tensor/ops.h).
#pragma once

#include <cmath>
#include <cstdint>

#include "tensor/dtype.h"

namespace ds::tensor {

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  // true: decoupled decay p -= lr*wd*p (AdamW, and DeepSpeed's "Adam" by default);
  // false: L2, g += wd*p before the moments (type "Adam" with adam_w_mode: false).
  bool decoupled_weight_decay = true;
};

// The scalars of one Adam step, each computed in double and rounded to float once, so that
// every implementation (cpu::adam_step, cuda::adam_step) starts its update from the same bits.
struct AdamCoefficients {
  float beta1, beta2, one_minus_beta1, one_minus_beta2;
  float bias_correction1, bias_correction2;
  float eps, decay, lr;
  bool decoupled;
};

inline AdamCoefficients adam_coefficients(const AdamOptions& options, double lr, int64_t step) {
  const double t = static_cast<double>(step);
  AdamCoefficients k{};
  k.beta1 = static_cast<float>(options.beta1);
  k.beta2 = static_cast<float>(options.beta2);
  k.one_minus_beta1 = static_cast<float>(1.0 - options.beta1);
  k.one_minus_beta2 = static_cast<float>(1.0 - options.beta2);
  k.bias_correction1 = static_cast<float>(1.0 - std::pow(options.beta1, t));
  k.bias_correction2 = static_cast<float>(1.0 - std::pow(options.beta2, t));
  k.eps = static_cast<float>(options.eps);
  k.decay = static_cast<float>(options.weight_decay);
  k.lr = static_cast<float>(lr);
  k.decoupled = options.decoupled_weight_decay;
  return k;
}

// What an update reads and writes besides the fp32 parameters and its states: the gradient as it
// is stored, n values of grad_dtype each multiplied by grad_scale as it is read (the fp32 values
// convert_scaled would make of them), and, unless params16 is nullptr, a 16-bit copy of the
// updated parameters (as from_f32 would round them), which mixed precision's model computes
// with. So a mixed-precision step reads its gradient and writes its parameters once.
struct StepIo {
  const void* grads = nullptr;
  DType grad_dtype = DType::kF32;
  float grad_scale = 1.0f;
  void* params16 = nullptr;
  DType params16_dtype = DType::kBF16;
};

struct SgdOptions {
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  double weight_decay = 0;
};

}  // namespace ds::tensor
