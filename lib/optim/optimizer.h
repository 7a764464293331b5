// The optimizers dstrain supports, on flat fp32 arrays: Adam/AdamW with DeepSpeed
// FusedAdam's update (bias correction always on) and SGD with torch.optim.SGD's momentum.
//
// An Optimizer owns the state of `size` elements (the flat range a rank updates); each
// step() call updates a contiguous part of that range, so an engine can step layer by
// layer. The update is elementwise, hence bit-identical for any OpenMP thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "config/ds_config.h"
#include "tensor/memory.h"
#include "tensor/ops.h"
#include "tensor/optimizer_options.h"

namespace ds::optim {

// One state array, named as torch.optim names it in its state_dict.
struct StateArray {
  std::string name;  // "exp_avg", "exp_avg_sq" or "momentum_buffer"
  std::span<float> data;
};

// Where state arrays live: host memory by default; a GPU's memory when the states live there;
// files under nvme_path when a ZeRO-Infinity run offloads the optimizer
// (tensor::Buffer::map_file). The optimizer's Ops must run where its states are.
using StateAllocator = std::function<tensor::Buffer(const std::string& name, size_t bytes)>;
StateAllocator host_state_allocator();
StateAllocator state_allocator(tensor::Device device);

using tensor::AdamOptions;
using tensor::SgdOptions;

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // Updates params[0, n) with the gradient `io` gives (stored in its dtype, scaled as it is read;
  // and the parameters' 16-bit copy written where io has one: tensor/optimizer_options.h) for the
  // state elements [offset, offset + n). lr: this step's learning rate (from LrSchedule); step:
  // the number of this applied step, 1 for the first (Adam's bias correction; SGD's momentum
  // buffer starts at step 1).
  virtual void step(float* params, const tensor::StepIo& io, int64_t n, double lr, int64_t step,
                    int64_t offset = 0) = 0;
  // The same from fp32 grads[0, n).
  void step(float* params, const float* grads, int64_t n, double lr, int64_t step,
            int64_t offset = 0) {
    this->step(params, tensor::StepIo{grads}, n, lr, step, offset);
  }

  // The state arrays, for checkpoints: write into them to restore a saved state.
  virtual std::vector<StateArray> state() = 0;
  // Bytes of optimizer state per element (memory accounting).
  virtual int64_t state_bytes_per_element() const = 0;

  int64_t size() const { return size_; }

 protected:
  Optimizer(int64_t size, tensor::Ops& ops) : size_(size), ops_(ops) {}
  void check_range(int64_t n, int64_t offset) const;
  tensor::Ops& ops() const { return ops_; }

 private:
  int64_t size_;
  tensor::Ops& ops_;
};

class Adam final : public Optimizer {
 public:
  Adam(int64_t size, AdamOptions options, const StateAllocator& allocate = host_state_allocator(),
       tensor::Ops& ops = tensor::cpu_ops());

  using Optimizer::step;
  void step(float* params, const tensor::StepIo& io, int64_t n, double lr, int64_t step,
            int64_t offset = 0) override;
  std::vector<StateArray> state() override;
  int64_t state_bytes_per_element() const override { return 8; }

  // OneCycle rewrites the betas while it cycles momentum.
  void set_betas(double beta1, double beta2);
  const AdamOptions& options() const { return options_; }
  std::span<float> exp_avg() { return {m_.as<float>(), static_cast<size_t>(size())}; }
  std::span<float> exp_avg_sq() { return {v_.as<float>(), static_cast<size_t>(size())}; }

 private:
  AdamOptions options_;
  // Accounted as optimizer state (tensor/memory.h), so memory reports see them.
  tensor::Buffer m_;
  tensor::Buffer v_;
};

class Sgd final : public Optimizer {
 public:
  Sgd(int64_t size, SgdOptions options, const StateAllocator& allocate = host_state_allocator(),
      tensor::Ops& ops = tensor::cpu_ops());

  using Optimizer::step;
  void step(float* params, const tensor::StepIo& io, int64_t n, double lr, int64_t step,
            int64_t offset = 0) override;
  // No state without momentum, as in torch.
  std::vector<StateArray> state() override;
  int64_t state_bytes_per_element() const override { return options_.momentum != 0 ? 4 : 0; }

  const SgdOptions& options() const { return options_; }
  std::span<float> momentum_buffer() {
    return {buffer_.as<float>(), buffer_.empty() ? 0 : static_cast<size_t>(size())};
  }

 private:
  SgdOptions options_;
  tensor::Buffer buffer_;
};

AdamOptions adam_options(const config::OptimizerConfig& config);
SgdOptions sgd_options(const config::OptimizerConfig& config);
// The optimizer a ds_config asks for, owning the state of `size` elements.
std::unique_ptr<Optimizer> make_optimizer(const config::OptimizerConfig& config, int64_t size,
                                          const StateAllocator& allocate = host_state_allocator(),
                                          tensor::Ops& ops = tensor::cpu_ops());

}  // namespace ds::optim
