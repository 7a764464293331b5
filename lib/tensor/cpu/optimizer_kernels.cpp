#include "tensor/cpu/optimizer_kernels.h"

#include <cmath>
#include <cstdint>

#include "util/error.h"

namespace ds::tensor::cpu {
namespace {

// Calls fn(gradient, round) with gradient(i), element i of io's gradient in fp32 (scaled, as
// convert_scaled makes it: scale * value), and round(i, value), which stores an updated parameter
// into io's 16-bit copy (nothing without one). Each storage gets its own loop, so the plain fp32
// one still vectorises.
template <typename Fn>
void with_step_io(const StepIo& io, Fn&& fn) {
  const float scale = io.grad_scale;
  const auto run = [&](auto gradient) {
    if (io.params16 == nullptr) return fn(gradient, [](int64_t, float) {});
    auto* copy = static_cast<uint16_t*>(io.params16);
    if (io.params16_dtype == DType::kBF16) {
      return fn(gradient, [copy](int64_t i, float p) { copy[i] = f32_to_bf16(p); });
    }
    if (io.params16_dtype == DType::kF16) {
      return fn(gradient, [copy](int64_t i, float p) { copy[i] = f32_to_f16(p); });
    }
    auto* full = static_cast<float*>(io.params16);
    fn(gradient, [full](int64_t i, float p) { full[i] = p; });
  };
  switch (io.grad_dtype) {
    case DType::kF32: {
      const auto* g = static_cast<const float*>(io.grads);
      if (scale == 1.0f) return run([g](int64_t i) { return g[i]; });
      return run([g, scale](int64_t i) { return scale * g[i]; });
    }
    case DType::kBF16: {
      const auto* g = static_cast<const uint16_t*>(io.grads);
      return run([g, scale](int64_t i) { return scale * bf16_to_f32(g[i]); });
    }
    case DType::kF16: {
      const auto* g = static_cast<const uint16_t*>(io.grads);
      return run([g, scale](int64_t i) { return scale * f16_to_f32(g[i]); });
    }
  }
  DS_CHECK(false, "optimizer step: unknown gradient dtype");
}

}  // namespace

void adam_step(float* params, const StepIo& io, float* m, float* v, int64_t n, double lr,
               int64_t step, const AdamOptions& options) {
  const AdamCoefficients k = adam_coefficients(options, lr, step);
  // Locals, so that the loop vectorises over plain floats.
  const float beta1 = k.beta1, beta2 = k.beta2;
  const float one_minus_beta1 = k.one_minus_beta1, one_minus_beta2 = k.one_minus_beta2;
  const float bias_correction1 = k.bias_correction1, bias_correction2 = k.bias_correction2;
  const float eps = k.eps, decay = k.decay, step_lr = k.lr;
  const bool decoupled = k.decoupled;

  with_step_io(io, [&](auto gradient, auto round) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float p = params[i];
      float g = gradient(i);
      if (!decoupled) g = g + decay * p;
      const float mi = beta1 * m[i] + one_minus_beta1 * g;
      const float vi = beta2 * v[i] + one_minus_beta2 * g * g;
      m[i] = mi;
      v[i] = vi;
      const float denom = std::sqrt(vi / bias_correction2) + eps;
      float update = (mi / bias_correction1) / denom;
      if (decoupled) update = update + decay * p;
      params[i] = p - step_lr * update;
      round(i, params[i]);
    }
  });
}

void sgd_step(float* params, const StepIo& io, float* buf, int64_t n, double lr, int64_t step,
              const SgdOptions& options) {
  const float decay = static_cast<float>(options.weight_decay);
  const float momentum = static_cast<float>(options.momentum);
  const float one_minus_dampening = static_cast<float>(1.0 - options.dampening);
  const float neg_lr = static_cast<float>(-lr);
  const bool use_momentum = buf != nullptr;
  const bool nesterov = options.nesterov;
  const bool first = step == 1;

  with_step_io(io, [&](auto gradient, auto round) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float d = gradient(i);
      if (decay != 0) d = d + decay * params[i];
      if (use_momentum) {
        const float b = first ? d : momentum * buf[i] + one_minus_dampening * d;
        buf[i] = b;
        d = nesterov ? d + momentum * b : b;
      }
      params[i] = params[i] + neg_lr * d;
      round(i, params[i]);
    }
  });
}

}  // namespace ds::tensor::cpu
