// The updates themselves are the kernels of tensor/cpu/optimizer_kernels.h (and their CUDA
// twins), reached through the Ops the states live with.
#include "optim/optimizer.h"

#include "util/error.h"

namespace ds::optim {

void Optimizer::check_range(int64_t n, int64_t offset) const {
  DS_CHECK(n >= 0 && offset >= 0 && offset + n <= size_,
           "optimizer step over [{}, {}) is outside its {} state elements", offset, offset + n,
           size_);
}

StateAllocator host_state_allocator() { return state_allocator(tensor::Device::cpu()); }

StateAllocator state_allocator(tensor::Device device) {
  return [device](const std::string&, size_t bytes) {
    return tensor::Buffer(bytes, tensor::MemoryCategory::kOptimizerState, device);
  };
}

Adam::Adam(int64_t size, AdamOptions options, const StateAllocator& allocate, tensor::Ops& ops)
    : Optimizer(size, ops),
      options_(options),
      m_(allocate("exp_avg", sizeof(float) * static_cast<size_t>(size))),
      v_(allocate("exp_avg_sq", sizeof(float) * static_cast<size_t>(size))) {}

void Adam::set_betas(double beta1, double beta2) {
  options_.beta1 = beta1;
  options_.beta2 = beta2;
}

void Adam::step(float* params, const tensor::StepIo& io, int64_t n, double lr, int64_t step,
                int64_t offset) {
  check_range(n, offset);
  DS_CHECK(step >= 1, "Adam step numbers start at 1, got {}", step);
  ops().adam_step(params, io, m_.as<float>() + offset, v_.as<float>() + offset, n, lr, step,
                  options_);
}

std::vector<StateArray> Adam::state() {
  return {{"exp_avg", exp_avg()}, {"exp_avg_sq", exp_avg_sq()}};
}

Sgd::Sgd(int64_t size, SgdOptions options, const StateAllocator& allocate, tensor::Ops& ops)
    : Optimizer(size, ops),
      options_(options),
      buffer_(options.momentum != 0
                  ? allocate("momentum_buffer", sizeof(float) * static_cast<size_t>(size))
                  : tensor::Buffer()) {}

void Sgd::step(float* params, const tensor::StepIo& io, int64_t n, double lr, int64_t step,
               int64_t offset) {
  check_range(n, offset);
  DS_CHECK(step >= 1, "SGD step numbers start at 1, got {}", step);
  ops().sgd_step(params, io, buffer_.empty() ? nullptr : buffer_.as<float>() + offset, n, lr, step,
                 options_);
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
                                          const StateAllocator& allocate, tensor::Ops& ops) {
  if (config.type == config::OptimizerType::kSgd) {
    return std::make_unique<Sgd>(size, sgd_options(config), allocate, ops);
  }
  return std::make_unique<Adam>(size, adam_options(config), allocate, ops);
}

}  // namespace ds::optim
