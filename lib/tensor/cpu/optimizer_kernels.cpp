#include "tensor/cpu/optimizer_kernels.h"

#include <cmath>

namespace ds::tensor::cpu {

void adam_step(float* params, const float* grads, float* m, float* v, int64_t n, double lr,
               int64_t step, const AdamOptions& options) {
  const AdamCoefficients k = adam_coefficients(options, lr, step);
  // Locals, so that the loop vectorises over plain floats.
  const float beta1 = k.beta1, beta2 = k.beta2;
  const float one_minus_beta1 = k.one_minus_beta1, one_minus_beta2 = k.one_minus_beta2;
  const float bias_correction1 = k.bias_correction1, bias_correction2 = k.bias_correction2;
  const float eps = k.eps, decay = k.decay, step_lr = k.lr;
  const bool decoupled = k.decoupled;

#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float p = params[i];
    float g = grads[i];
    if (!decoupled) g = g + decay * p;
    const float mi = beta1 * m[i] + one_minus_beta1 * g;
    const float vi = beta2 * v[i] + one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi / bias_correction2) + eps;
    float update = (mi / bias_correction1) / denom;
    if (decoupled) update = update + decay * p;
    params[i] = p - step_lr * update;
  }
}

void sgd_step(float* params, const float* grads, float* buf, int64_t n, double lr, int64_t step,
              const SgdOptions& options) {
  const float decay = static_cast<float>(options.weight_decay);
  const float momentum = static_cast<float>(options.momentum);
  const float one_minus_dampening = static_cast<float>(1.0 - options.dampening);
  const float neg_lr = static_cast<float>(-lr);
  const bool use_momentum = buf != nullptr;
  const bool nesterov = options.nesterov;
  const bool first = step == 1;

#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float d = grads[i];
    if (decay != 0) d = d + decay * params[i];
    if (use_momentum) {
      const float b = first ? d : momentum * buf[i] + one_minus_dampening * d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    params[i] = params[i] + neg_lr * d;
  }
}

}  // namespace ds::tensor::cpu
