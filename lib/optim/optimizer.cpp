// Per-element math is float, with the scalar coefficients computed in double and rounded
// once, the way DeepSpeed's FusedAdam kernel receives them from Python; this keeps the
// results within a few ulps of torch.optim.AdamW / Adam / SGD.
#include "optim/optimizer.h"

#include <cmath>

#include "util/error.h"

namespace ds::optim {

void Optimizer::check_range(int64_t n, int64_t offset) const {
  DS_CHECK(n >= 0 && offset >= 0 && offset + n <= size_,
           "optimizer step over [{}, {}) is outside its {} state elements", offset, offset + n,
           size_);
}

StateAllocator host_state_allocator() {
  return [](const std::string&, size_t bytes) {
    return tensor::Buffer(bytes, tensor::MemoryCategory::kOptimizerState);
  };
}

Adam::Adam(int64_t size, AdamOptions options, const StateAllocator& allocate)
    : Optimizer(size),
      options_(options),
      m_(allocate("exp_avg", sizeof(float) * static_cast<size_t>(size))),
      v_(allocate("exp_avg_sq", sizeof(float) * static_cast<size_t>(size))) {}

void Adam::set_betas(double beta1, double beta2) {
  options_.beta1 = beta1;
  options_.beta2 = beta2;
}

void Adam::step(float* params, const float* grads, int64_t n, double lr, int64_t step,
                int64_t offset) {
  check_range(n, offset);
  DS_CHECK(step >= 1, "Adam step numbers start at 1, got {}", step);
  const double t = static_cast<double>(step);
  const float beta1 = static_cast<float>(options_.beta1);
  const float beta2 = static_cast<float>(options_.beta2);
  const float one_minus_beta1 = static_cast<float>(1.0 - options_.beta1);
  const float one_minus_beta2 = static_cast<float>(1.0 - options_.beta2);
  const float bias_correction1 = static_cast<float>(1.0 - std::pow(options_.beta1, t));
  const float bias_correction2 = static_cast<float>(1.0 - std::pow(options_.beta2, t));
  const float eps = static_cast<float>(options_.eps);
  const float decay = static_cast<float>(options_.weight_decay);
  const float step_lr = static_cast<float>(lr);
  const bool decoupled = options_.decoupled_weight_decay;
  float* m = m_.as<float>() + offset;
  float* v = v_.as<float>() + offset;

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

std::vector<StateArray> Adam::state() {
  return {{"exp_avg", exp_avg()}, {"exp_avg_sq", exp_avg_sq()}};
}

Sgd::Sgd(int64_t size, SgdOptions options, const StateAllocator& allocate)
    : Optimizer(size),
      options_(options),
      buffer_(options.momentum != 0
                  ? allocate("momentum_buffer", sizeof(float) * static_cast<size_t>(size))
                  : tensor::Buffer()) {}

void Sgd::step(float* params, const float* grads, int64_t n, double lr, int64_t step,
               int64_t offset) {
  check_range(n, offset);
  DS_CHECK(step >= 1, "SGD step numbers start at 1, got {}", step);
  const float decay = static_cast<float>(options_.weight_decay);
  const float momentum = static_cast<float>(options_.momentum);
  const float one_minus_dampening = static_cast<float>(1.0 - options_.dampening);
  const float neg_lr = static_cast<float>(-lr);
  const bool use_momentum = options_.momentum != 0;
  const bool nesterov = options_.nesterov;
  // torch creates the buffer as a copy of the first gradient (no dampening applied).
  const bool first = step == 1;
  float* buf = use_momentum ? buffer_.as<float>() + offset : nullptr;

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

std::vector<StateArray> Sgd::state() {
  if (buffer_.empty()) return {};
  return {{"momentum_buffer", momentum_buffer()}};
}

AdamOptions adam_options(const config::OptimizerConfig& config) {
  AdamOptions o;
  o.beta1 = config.betas[0];
  o.beta2 = config.betas[1];
  o.eps = config.eps;
  o.weight_decay = config.weight_decay;
  o.decoupled_weight_decay = config.decoupled_weight_decay();
  return o;
}

SgdOptions sgd_options(const config::OptimizerConfig& config) {
  SgdOptions o;
  o.momentum = config.momentum;
  o.dampening = config.dampening;
  o.nesterov = config.nesterov;
  o.weight_decay = config.weight_decay;
  return o;
}

std::unique_ptr<Optimizer> make_optimizer(const config::OptimizerConfig& config, int64_t size,
                                          const StateAllocator& allocate) {
  if (config.type == config::OptimizerType::kSgd) {
    return std::make_unique<Sgd>(size, sgd_options(config), allocate);
  }
  return std::make_unique<Adam>(size, adam_options(config), allocate);
}

}  // namespace ds::optim
