#include "zero/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "optim/grad_clip.h"
#include "tensor/cpu/cast.h"
#include "tensor/cpu/kernels.h"
#include "util/log.h"

namespace ds::zero {

using tensor::Buffer;
using tensor::DType;
using tensor::MemoryCategory;
namespace cpu = tensor::cpu;

namespace {

DType storage_dtype(const config::DsConfig& ds) {
  if (ds.bf16.enabled) return DType::kBF16;
  if (ds.fp16.enabled) return DType::kF16;
  return DType::kF32;
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Adds the lifetime of the scope to `total`: the communication part of a step.
class ScopedTimer {
 public:
  explicit ScopedTimer(double& total) : total_(total), start_(Clock::now()) {}
  ~ScopedTimer() { total_ += seconds_since(start_); }
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  double& total_;
  Clock::time_point start_;
};

Buffer floats(int64_t n, MemoryCategory category) {
  return Buffer(sizeof(float) * static_cast<size_t>(n), category);
}

}  // namespace

// The model's view of the engine: fp32 weights and gradient buffers layer by layer.
// Weights are up-cast (16-bit storage) or gathered (stage 3) into work buffers; the
// embedding gets buffers of its own because the tied head uses them between the
// embedding's forward and its backward. Gradients of a layer are handed to the
// engine's storage (reduced first at stages 2 and 3) when its backward ends.
class Engine::Buffers final : public model::LayerBuffers {
 public:
  explicit Buffers(Engine& e) : e_(e) {
    int64_t largest = 0;
    for (const LayerShard& s : e.dp_part_.layers) largest = std::max(largest, s.padded);
    const int64_t embedding = e.dp_part_.layers[0].padded;
    const bool work_weights = e.mixed() || e.stage_ == 3;
    const bool work_grads = e.mixed() || e.stage_ >= 2;
    if (work_weights) {
      w_work_ = floats(largest, MemoryCategory::kCommunication);
      w_embedding_ = floats(embedding, MemoryCategory::kCommunication);
      if (e.stage_ == 3 && e.mixed()) {
        gathered_ = Buffer(e.esize() * largest, MemoryCategory::kCommunication);
      }
    }
    if (work_grads) {
      dw_work_ = floats(largest, MemoryCategory::kCommunication);
      dw_embedding_ = floats(embedding, MemoryCategory::kCommunication);
    }
    // overlap_comm: a layer's reduce-scatter runs while the next layer's backward computes
    // into a second gradient buffer.
    overlap_ = e.stage_ >= 2 && e.cfg_.ds.zero.overlap() && e.comm_->size() > 1;
    if (overlap_) dw_spare_ = floats(largest, MemoryCategory::kCommunication);
    piece_ = floats(largest / e.comm_->size() + 1, MemoryCategory::kCommunication);
  }

  // The parameters changed: cached up-casts and gathers are stale.
  void invalidate() {
    cached_layer_ = -1;
    embedding_cached_ = false;
  }
  void begin_backward() { embedding_grads_fresh_ = true; }
  // Waits for the reduce-scatter in flight and keeps its piece.
  void drain() {
    if (!in_flight_) return;
    {
      ScopedTimer timer(e_.comm_seconds_);
      in_flight_->wait();
    }
    in_flight_.reset();
    add_piece(in_flight_layer_);
  }
  float* grad_work() { return dw_work_.as<float>(); }
  float* piece() { return piece_.as<float>(); }

  const float* weights(int l) override {
    const LayerShard& s = e_.dp_part_.layers[l];
    if (w_work_.empty()) return e_.params_.as<float>() + s.full_offset;
    float* dst = l == 0 ? w_embedding_.as<float>() : w_work_.as<float>();
    if (l == 0 ? embedding_cached_ : cached_layer_ == l) return dst;
    if (e_.stage_ == 3) {
      // All-gather the layer's pieces, then up-cast the whole layer.
      const void* own = static_cast<const char*>(e_.params_.data()) + e_.esize() * s.local_offset;
      void* full = e_.mixed() ? gathered_.data() : static_cast<void*>(dst);
      {
        ScopedTimer timer(e_.comm_seconds_);
        e_.comm_->allgather(own, full, e_.dtype_, s.own.size);
      }
      if (e_.mixed()) cpu::to_f32(dst, full, e_.dtype_, s.numel);
    } else {
      cpu::to_f32(dst, static_cast<const char*>(e_.params_.data()) + e_.esize() * s.full_offset,
                  e_.dtype_, s.numel);
    }
    if (l == 0) {
      embedding_cached_ = true;
    } else {
      cached_layer_ = l;
    }
    return dst;
  }

  float* grads(int l) override {
    const LayerShard& s = e_.dp_part_.layers[l];
    if (dw_work_.empty()) return static_cast<float*>(e_.grads_.data()) + s.full_offset;
    if (l == 0) {
      if (embedding_grads_fresh_) {
        std::memset(dw_embedding_.data(), 0, sizeof(float) * s.padded);
        embedding_grads_fresh_ = false;
      }
      return dw_embedding_.as<float>();
    }
    if (grads_layer_ != l) {
      std::memset(dw_work_.data(), 0, sizeof(float) * s.padded);
      grads_layer_ = l;
    }
    return dw_work_.as<float>();
  }

  void backward_done(int l) override {
    grads_layer_ = -1;
    if (dw_work_.empty()) return;  // fp32 at stage 0/1: accumulated in place
    const LayerShard& s = e_.dp_part_.layers[l];
    const float* dw = l == 0 ? dw_embedding_.as<float>() : dw_work_.as<float>();
    char* storage = static_cast<char*>(e_.grads_.data());
    if (e_.stage_ >= 2) {
      // Keep only the own piece of the mean over ranks (summed over micro-steps).
      drain();
      if (overlap_ && l != 0) {
        {
          ScopedTimer timer(e_.comm_seconds_);
          in_flight_ = e_.comm_->reduce_scatter_mean_async(dw, piece_.as<float>(), s.own.size);
        }
        in_flight_layer_ = l;
        std::swap(dw_work_, dw_spare_);  // the next layer writes while this one travels
        return;
      }
      {
        ScopedTimer timer(e_.comm_seconds_);
        e_.comm_->reduce_scatter_mean(dw, piece_.as<float>(), s.own.size);
      }
      add_piece(l);
    } else {
      cpu::add_f32_into(storage + e_.esize() * s.full_offset, e_.dtype_, dw, s.numel);
    }
  }

 private:
  void add_piece(int l) {
    const LayerShard& s = e_.dp_part_.layers[l];
    cpu::add_f32_into(static_cast<char*>(e_.grads_.data()) + e_.esize() * s.local_offset, e_.dtype_,
                      piece_.as<float>(), s.own.size);
  }

  Engine& e_;
  Buffer w_work_, w_embedding_, gathered_, dw_work_, dw_embedding_, piece_, dw_spare_;
  bool overlap_ = false;
  std::unique_ptr<PendingOp> in_flight_;
  int in_flight_layer_ = -1;
  int cached_layer_ = -1;
  bool embedding_cached_ = false;
  int grads_layer_ = -1;
  bool embedding_grads_fresh_ = true;
};

Engine::Engine(const config::TrainConfig& cfg, model::Gpt& model, const float* initial,
               std::unique_ptr<DpComm> comm)
    : cfg_(cfg),
      model_(model),
      comm_(std::move(comm)),
      stage_(static_cast<int>(cfg.ds.zero.stage)),
      dtype_(storage_dtype(cfg.ds)),
      micro_(cfg.ds.batch.micro_batch_per_gpu),
      seq_len_(cfg.data.seq_len),
      accum_(cfg.ds.batch.gradient_accumulation_steps) {
  const model::ModelLayout& layout = model_.layout();
  const int rank = comm_->rank(), world = comm_->size();
  dp_part_ = Partition::build(layout, rank, world);
  // Stage 0 keeps and updates everything on every rank: one piece, the whole layer.
  part_ = stage_ == 0 ? Partition::build(layout, 0, 1) : dp_part_;

  const int64_t param_elements = stage_ == 3 ? dp_part_.local_total : dp_part_.full_total;
  const int64_t grad_elements = stage_ >= 2 ? dp_part_.local_total : dp_part_.full_total;
  params_ = Buffer(esize() * param_elements, MemoryCategory::kParameters);
  grads_ = Buffer(esize() * grad_elements, MemoryCategory::kGradients);
  if (mixed()) master_ = floats(part_.local_total, MemoryCategory::kOptimizerState);
  int64_t largest_piece = 0;
  for (const LayerShard& o : part_.layers) largest_piece = std::max(largest_piece, o.own.size);
  own_grad_ = floats(largest_piece, MemoryCategory::kOther);

  // Every rank starts from the same full weights and keeps its share.
  char* params = static_cast<char*>(params_.data());
  for (size_t l = 0; l < layout.layers.size(); ++l) {
    const LayerShard& s = dp_part_.layers[l];
    const float* src = initial + s.layer_offset;
    if (stage_ == 3) {
      cpu::from_f32(params + esize() * s.local_offset, dtype_, src + s.own.offset, s.real_size());
    } else {
      cpu::from_f32(params + esize() * s.full_offset, dtype_, src, s.numel);
    }
    if (mixed()) {
      const LayerShard& o = part_.layers[l];
      std::memcpy(master(static_cast<int>(l)), src + o.own.offset, sizeof(float) * o.real_size());
    }
  }

  optimizer_ = optim::make_optimizer(cfg.ds.optimizer, part_.local_total);
  schedule_ = std::make_unique<optim::LrSchedule>(
      cfg.ds.scheduler, cfg.ds.optimizer.lr, cfg.ds.optimizer.type != config::OptimizerType::kSgd);
  // DeepSpeed: ZeRO's scaler honours hysteresis; stage 0's FP16_Optimizer does not.
  scaler_ = optim::LossScaler::from_config(
      cfg.ds.fp16,
      stage_ == 0 ? optim::LossScaler::Kind::kFp16Optimizer : optim::LossScaler::Kind::kDynamic);
  buffers_ = std::make_unique<Buffers>(*this);
  inputs_ = Buffer(sizeof(int32_t) * micro_ * seq_len_, MemoryCategory::kActivations);
  targets_ = Buffer(sizeof(int32_t) * micro_ * seq_len_, MemoryCategory::kActivations);
  model_.reserve(static_cast<int>(micro_), static_cast<int>(seq_len_));
}

Engine::~Engine() = default;

float* Engine::master(int l) {
  if (mixed()) return master_.as<float>() + part_.layers[l].local_offset;
  // fp32: the parameters are the master weights.
  const LayerShard& s = dp_part_.layers[l];
  if (stage_ == 3) return params_.as<float>() + s.local_offset;
  return params_.as<float>() + s.full_offset + part_.layers[l].own.offset;
}

void Engine::reduce_gradients() {
  if (stage_ >= 2) return;  // reduced layer by layer during the backward
  ScopedTimer timer(comm_seconds_);
  float* work = buffers_->grad_work();
  char* storage = static_cast<char*>(grads_.data());
  for (const LayerShard& s : dp_part_.layers) {
    char* layer = storage + esize() * s.full_offset;
    float* g = mixed() ? work : reinterpret_cast<float*>(layer);
    if (mixed()) {
      cpu::to_f32(work, layer, dtype_, s.numel);
      std::memset(work + s.numel, 0, sizeof(float) * (s.padded - s.numel));
    }
    if (stage_ == 0) {
      comm_->allreduce_mean(g, s.padded);
      if (mixed()) cpu::from_f32(layer, dtype_, work, s.numel);
    } else {
      // Stage 1: every rank keeps the full gradient buffer but only its piece is reduced.
      comm_->reduce_scatter_mean(g, buffers_->piece(), s.own.size);
      cpu::from_f32(layer + esize() * s.own.offset, dtype_, buffers_->piece(), s.own.size);
    }
  }
}

std::pair<double, bool> Engine::gradient_norm() {
  double sum = 0;
  float* work = own_grad_.as<float>();
  for (size_t l = 0; l < part_.layers.size(); ++l) {
    const LayerShard& o = part_.layers[l];
    const LayerShard& s = dp_part_.layers[l];
    const int64_t offset = stage_ >= 2 ? s.local_offset : s.full_offset + o.own.offset;
    const void* g = static_cast<const char*>(grads_.data()) + esize() * offset;
    cpu::to_f32(work, g, dtype_, o.real_size());
    sum += cpu::sum_of_squares(work, o.real_size());
  }
  // Stage 0 ranks hold the same reduced gradient; above it each holds a disjoint piece.
  if (stage_ > 0) {
    ScopedTimer timer(comm_seconds_);
    sum = comm_->allreduce_sum(sum);
  }
  const bool overflow = !std::isfinite(sum);
  return {std::sqrt(sum), overflow};
}

void Engine::update_parameters(double lr, double grad_scale) {
  float* work = own_grad_.as<float>();
  char* params = static_cast<char*>(params_.data());
  for (size_t l = 0; l < part_.layers.size(); ++l) {
    const int layer = static_cast<int>(l);
    const LayerShard& o = part_.layers[l];
    const LayerShard& s = dp_part_.layers[l];
    const int64_t n = o.real_size();
    const int64_t offset = stage_ >= 2 ? s.local_offset : s.full_offset + o.own.offset;
    cpu::to_f32(work, static_cast<const char*>(grads_.data()) + esize() * offset, dtype_, n);
    if (grad_scale != 1.0) cpu::scale_inplace(work, static_cast<float>(grad_scale), n);
    optimizer_->step(master(layer), work, n, lr, applied_steps_, o.local_offset);
    if (mixed()) {
      const int64_t param_offset = stage_ == 3 ? s.local_offset : s.full_offset + o.own.offset;
      cpu::from_f32(params + esize() * param_offset, dtype_, master(layer), n);
    }
  }
}

void Engine::publish_parameters() {
  buffers_->invalidate();
  if (stage_ == 0 || stage_ == 3) return;  // stage 0 updated all; stage 3 gathers on use
  ScopedTimer timer(comm_seconds_);
  char* params = static_cast<char*>(params_.data());
  for (const LayerShard& s : dp_part_.layers) {
    char* layer = params + esize() * s.full_offset;
    comm_->allgather(layer + esize() * s.own.offset, layer, dtype_, s.own.size);
  }
}

StepStats Engine::train_step(const BatchFiller& fill) {
  std::memset(grads_.data(), 0, grads_.size());
  StepStats stats;
  stats.loss_scale = scaler_.scale();
  const int B = static_cast<int>(micro_), T = static_cast<int>(seq_len_);
  model::MicroBatch mb{inputs_.as<int32_t>(), targets_.as<int32_t>(), B, T,
                       static_cast<float>(stats.loss_scale / (double(B) * T * accum_))};
  comm_seconds_ = 0;
  double loss_sum = 0;
  for (int m = 0; m < accum_; ++m) {
    fill(m, inputs_.as<int32_t>(), targets_.as<int32_t>());
    auto start = Clock::now();
    loss_sum += model_.forward(mb, *buffers_);
    stats.forward_s += seconds_since(start);
    start = Clock::now();
    buffers_->begin_backward();
    model_.backward(mb, *buffers_);
    buffers_->drain();
    stats.backward_s += seconds_since(start);
  }
  {
    const auto start = Clock::now();
    reduce_gradients();
    ScopedTimer timer(comm_seconds_);
    stats.loss = comm_->allreduce_sum(loss_sum / static_cast<double>(accum_)) / comm_->size();
    stats.backward_s += seconds_since(start);
  }
  const auto optimizer_start = Clock::now();

  auto [scaled_norm, overflow] = gradient_norm();
  stats.grad_norm = scaled_norm / stats.loss_scale;
  if (overflow) {
    const bool skip =
        cfg_.ds.fp16.enabled || (cfg_.ds.bf16.enabled && cfg_.ds.bf16.check_grad_overflow);
    if (!skip) {
      throw Error(fmt::format("step {}: the gradient norm is {} (loss {})", applied_steps_ + 1,
                              stats.grad_norm, stats.loss),
                  "lower the learning rate or enable gradient_clipping");
    }
    scaler_.update(true);  // throws when already at the minimum scale
    stats.skipped = true;
    stats.optimizer_s = seconds_since(optimizer_start);
    stats.comm_s = comm_seconds_;
    return stats;
  }
  const double clip = optim::clip_coefficient(stats.grad_norm, cfg_.ds.gradient_clipping);
  ++applied_steps_;
  stats.lr = schedule_->lr_at(applied_steps_);
  if (auto* adam = dynamic_cast<optim::Adam*>(optimizer_.get());
      adam && schedule_->cycles_momentum()) {
    adam->set_betas(schedule_->beta1_at(applied_steps_).value_or(adam->options().beta1),
                    schedule_->beta2_override().value_or(adam->options().beta2));
  }
  update_parameters(stats.lr, clip / stats.loss_scale);
  publish_parameters();
  scaler_.update(false);
  stats.optimizer_s = seconds_since(optimizer_start);
  stats.comm_s = comm_seconds_;
  return stats;
}

double Engine::eval_loss(const int32_t* inputs, const int32_t* targets) {
  const int B = static_cast<int>(micro_), T = static_cast<int>(seq_len_);
  model::MicroBatch mb{inputs, targets, B, T, 0.0f};
  return model_.forward(mb, *buffers_);
}

std::vector<float> Engine::full_parameters() {
  const model::ModelLayout& layout = model_.layout();
  std::vector<float> out(layout.total, 0.0f);
  for (size_t l = 0; l < dp_part_.layers.size(); ++l) {
    const LayerShard& s = dp_part_.layers[l];
    float* dst = out.data() + s.layer_offset;
    if (mixed() && stage_ > 0) {
      // The fp32 master pieces, gathered: more precise than the 16-bit parameters.
      std::vector<float> full(static_cast<size_t>(s.padded));
      comm_->allgather(master(static_cast<int>(l)), full.data(), DType::kF32, s.own.size);
      std::memcpy(dst, full.data(), sizeof(float) * s.numel);
    } else if (mixed()) {
      std::memcpy(dst, master(static_cast<int>(l)), sizeof(float) * s.numel);
    } else {
      std::memcpy(dst, buffers_->weights(static_cast<int>(l)), sizeof(float) * s.numel);
    }
  }
  buffers_->invalidate();
  return out;
}

std::vector<std::string> Engine::optimizer_state_names() {
  std::vector<std::string> names;
  for (const optim::StateArray& a : optimizer_->state()) names.push_back(a.name);
  return names;
}

void Engine::for_each_own_run(const OwnRunVisitor& visit) const {
  const model::ModelLayout& layout = model_.layout();
  for (size_t l = 0; l < layout.layers.size(); ++l) {
    const model::LayerSpec& spec = layout.layers[l];
    const LayerShard& o = part_.layers[l];
    const int64_t own_begin = o.own.offset, own_end = o.own.offset + o.real_size();
    for (int i = 0; i < spec.num_params; ++i) {
      const model::ParamSpec& p = layout.params[spec.first_param + i];
      const int64_t p_begin = p.offset - spec.offset;
      const int64_t begin = std::max(own_begin, p_begin);
      const int64_t end = std::min(own_end, p_begin + p.numel);
      if (begin < end)
        visit(static_cast<int>(l), p, begin - p_begin, end - begin, begin - own_begin);
    }
  }
}

std::vector<StateSegment> Engine::state_segments() {
  std::vector<StateSegment> out;
  if (stage_ == 0 && comm_->rank() != 0) return out;
  const std::vector<optim::StateArray> arrays = optimizer_->state();
  for_each_own_run(
      [&](int l, const model::ParamSpec& p, int64_t begin, int64_t length, int64_t in_piece) {
        StateSegment s;
        s.param = p.name;
        s.begin = begin;
        s.length = length;
        s.master = master(l) + in_piece;
        for (const optim::StateArray& a : arrays) {
          s.optimizer.emplace_back(a.name, a.data.data() + part_.layers[l].local_offset + in_piece);
        }
        out.push_back(std::move(s));
      });
  return out;
}

void Engine::load_state(const FullState& state, int64_t applied_steps,
                        const optim::LossScalerState& scaler) {
  // Every rank copies the elements of its own pieces (at stage 0: all of them) from
  // the complete state, whatever layout saved it.
  const std::vector<optim::StateArray> arrays = optimizer_->state();
  for_each_own_run(
      [&](int l, const model::ParamSpec& p, int64_t begin, int64_t length, int64_t in_piece) {
        const auto found = state.find(p.name);
        DS_CHECK(found != state.end(), "the checkpoint state has no parameter {}", p.name);
        const auto copy = [&](const std::string& name, float* dst) {
          const auto values = found->second.find(name);
          DS_CHECK(values != found->second.end(), "the checkpoint has no {} for {}", name, p.name);
          std::memcpy(dst, values->second.data() + begin, sizeof(float) * length);
        };
        copy("master", master(l) + in_piece);
        for (const optim::StateArray& a : arrays) {
          copy(a.name, a.data.data() + part_.layers[l].local_offset + in_piece);
        }
      });
  if (mixed()) {
    char* params = static_cast<char*>(params_.data());
    for (size_t l = 0; l < part_.layers.size(); ++l) {
      const LayerShard& o = part_.layers[l];
      const LayerShard& s = dp_part_.layers[l];
      const int64_t offset = stage_ == 3 ? s.local_offset : s.full_offset + o.own.offset;
      cpu::from_f32(params + esize() * offset, dtype_, master(static_cast<int>(l)), o.real_size());
    }
  }
  applied_steps_ = applied_steps;
  scaler_.load_state(scaler);
  publish_parameters();
}

MemoryReport Engine::memory_report() const {
  MemoryReport r;
  r.rank = comm_->rank();
  r.stage = stage_;
  r.params_bytes = static_cast<int64_t>(params_.size());
  r.grads_bytes = static_cast<int64_t>(grads_.size());
  r.optimizer_bytes = static_cast<int64_t>(master_.size()) +
                      optimizer_->state_bytes_per_element() * part_.local_total;
  // The ZeRO paper's accounting: p and g bytes per parameter, o for master + moments.
  const double psi = static_cast<double>(model_.layout().parameter_count());
  const double n = comm_->size();
  const double p = static_cast<double>(esize()), g = p;
  const double o =
      (mixed() ? 4.0 : 0.0) + static_cast<double>(optimizer_->state_bytes_per_element());
  double predicted = 0;
  switch (stage_) {
    case 0:
      predicted = (p + g + o) * psi;
      break;
    case 1:
      predicted = (p + g) * psi + o * psi / n;
      break;
    case 2:
      predicted = p * psi + (g + o) * psi / n;
      break;
    default:
      predicted = (p + g + o) * psi / n;
      break;
  }
  r.predicted_model_states_bytes = static_cast<int64_t>(predicted);
  return r;
}

}  // namespace ds::zero
