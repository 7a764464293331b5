#include "tensor/cpu/optimizer_kernels.h"

#include <cmath>

namespace ds::tensor::cpu {

void adam_step(float* params, const float* grads, float* m, float* v, int64_t n, double lr,
               int64_t step, const AdamOptions& options) {
  const double t = static_cast<double>(step);
  const float beta1 = static_cast<float>(options.beta1);
  const float beta2 = static_cast<float>(options.beta2);
  const float one_minus_beta1 = static_cast<float>(1.0 - options.beta1);
  const float one_minus_beta2 = static_cast<float>(1.0 - options.beta2);
  const float bias_correction1 = static_cast<float>(1.0 - std::pow(options.beta1, t));
  const float bias_correction2 = static_cast<float>(1.0 - std::pow(options.beta2, t));
  const float eps = static_cast<float>(options.eps);
  const float decay = static_cast<float>(options.weight_decay);
  const float step_lr = static_cast<float>(lr);
  const bool decoupled = options.decoupled_weight_decay;

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
