#include "zero/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "optim/grad_clip.h"
#include "util/log.h"
#include "zero/device_comm.h"
#include "zero/engine_buffers.h"
#include "zero/nvme_store.h"
#include "zero/step_timer.h"

namespace ds::zero {

using tensor::Buffer;
using tensor::DType;
using tensor::MemoryCategory;

bool states_on_device(const config::TrainConfig& cfg, const tensor::Device& model_device) {
  const config::ZeroConfig& z = cfg.ds.zero;
  const bool offloaded = z.offload_optimizer.device != config::OffloadDevice::kNone ||
                         z.offload_param.device != config::OffloadDevice::kNone;
  return !model_device.is_cpu() && !offloaded;
}

namespace {

DType storage_dtype(const config::DsConfig& ds) {
  if (ds.bf16.enabled) return DType::kBF16;
  if (ds.fp16.enabled) return DType::kF16;
  return DType::kF32;
}

// The model's ops when the states live with it, else the CPU's.
tensor::Ops& state_ops(const config::TrainConfig& cfg, model::Gpt& model) {
  return states_on_device(cfg, model.ops().device()) ? model.ops() : tensor::cpu_ops();
}

}  // namespace

Engine::Engine(const config::TrainConfig& cfg, model::Gpt& model, const float* initial,
               std::unique_ptr<DpComm> comm, StageContext stage)
    : Engine(
          cfg, model,
          [initial](int64_t offset, int64_t count, float* dst) {
            std::memcpy(dst, initial + offset, sizeof(float) * static_cast<size_t>(count));
          },
          std::move(comm), std::move(stage)) {}

Engine::Engine(const config::TrainConfig& cfg, model::Gpt& model, const InitialWeights& initial,
               std::unique_ptr<DpComm> comm, StageContext stage)
    : cfg_(cfg),
      model_(model),
      comm_(std::move(comm)),
      stage_ctx_(std::move(stage)),
      ops_(state_ops(cfg, model)),
      stage_(static_cast<int>(cfg.ds.zero.stage)),
      dtype_(storage_dtype(cfg.ds)),
      micro_(cfg.ds.batch.micro_batch_per_gpu),
      seq_len_(cfg.data.seq_len),
      accum_(cfg.ds.batch.gradient_accumulation_steps) {
  const model::ModelLayout& layout = model_.layout();
  const int rank = comm_->rank(), world = comm_->size();
  const int num_layers = static_cast<int>(layout.layers.size());
  if (stage_ctx_.last_layer < 0) stage_ctx_.last_layer = num_layers - 1;
  held_.assign(layout.layers.size(), false);
  for (int l = stage_ctx_.first_layer; l <= stage_ctx_.last_layer; ++l) held_[l] = true;
  if (stage_ctx_.tied_copy) held_[0] = true;
  dp_part_ = Partition::build(layout, rank, world, held_);
  // Stage 0 keeps and updates everything on every rank: one piece, the whole layer.
  part_ = stage_ == 0 ? Partition::build(layout, 0, 1, held_) : dp_part_;

  const int64_t param_elements = stage_ == 3 ? dp_part_.local_total : dp_part_.full_total;
  const int64_t grad_elements = stage_ >= 2 ? dp_part_.local_total : dp_part_.full_total;
  // ZeRO-Infinity (stage 3 only, as the config checks): states in files under nvme_path.
  const config::ZeroConfig& z = cfg.ds.zero;
  std::unique_ptr<NvmeStore> nvme_params, nvme_optimizer;
  if (z.offload_param.device == config::OffloadDevice::kNvme) {
    nvme_params = std::make_unique<NvmeStore>(z.offload_param.nvme_path,
                                              "zero_optimization.offload_param.nvme_path", rank);
  }
  if (z.offload_optimizer.device == config::OffloadDevice::kNvme) {
    nvme_optimizer = std::make_unique<NvmeStore>(
        z.offload_optimizer.nvme_path, "zero_optimization.offload_optimizer.nvme_path", rank);
  }
  const tensor::Device device = ops_.device();
  const size_t param_bytes = esize() * param_elements;
  params_ = nvme_params ? nvme_params->allocate("params", param_bytes)
                        : Buffer(param_bytes, MemoryCategory::kParameters, device);
  grads_ = Buffer(esize() * grad_elements, MemoryCategory::kGradients, device);
  if (mixed()) {
    const size_t master_bytes = sizeof(float) * part_.local_total;
    master_ = nvme_optimizer ? nvme_optimizer->allocate("master", master_bytes)
                             : Buffer(master_bytes, MemoryCategory::kOptimizerState, device);
  }
  layer_sums_ = Buffer(sizeof(double) * part_.layers.size(), MemoryCategory::kOther, device);
  host_layer_sums_.assign(part_.layers.size(), 0.0);
  // The groups' device forms: NCCL when the caller made them, else staged through host memory;
  // none when the states are host memory.
  if (device.is_cpu()) {
    DS_CHECK(!stage_ctx_.device_data && !stage_ctx_.device_tied,
             "device comms for an engine whose states are host memory");
  } else {
    if (!stage_ctx_.device_data) {
      stage_ctx_.device_data = std::make_shared<DeviceStagedComm>(*comm_, ops_);
    }
    if (stage_ctx_.tied && !stage_ctx_.device_tied) {
      stage_ctx_.device_tied = std::make_shared<DeviceStagedComm>(*stage_ctx_.tied, ops_);
    }
  }

  // Every rank starts from the same weights and reads what it keeps: at stage 3 its own
  // pieces, below it whole layers (read into host memory, then moved to the states).
  int64_t largest_layer = 0;
  for (const LayerShard& s : dp_part_.layers) largest_layer = std::max(largest_layer, s.numel);
  Buffer values = Buffer::floats(largest_layer, MemoryCategory::kOther);
  Buffer on_device =
      device.is_cpu() ? Buffer() : ops_.allocate_floats(largest_layer, MemoryCategory::kOther);
  float* work = device.is_cpu() ? values.as<float>() : on_device.as<float>();
  char* params = static_cast<char*>(params_.data());
  for (size_t l = 0; l < layout.layers.size(); ++l) {
    const LayerShard& s = dp_part_.layers[l];
    if (s.numel == 0) continue;  // not held
    const int64_t begin = stage_ == 3 ? s.own.offset : 0;
    const int64_t n = stage_ == 3 ? s.real_size() : s.numel;
    initial(s.layer_offset + begin, n, values.as<float>());  // the layer's [begin, begin + n)
    ops_.upload(work, values.as<float>(), sizeof(float) * static_cast<size_t>(n));
    const int64_t offset = stage_ == 3 ? s.local_offset : s.full_offset;
    ops_.from_f32(params + esize() * offset, dtype_, work, n);
    if (mixed()) {
      const LayerShard& o = part_.layers[l];
      ops_.copy(master(static_cast<int>(l)), work + (o.own.offset - begin),
                sizeof(float) * o.real_size());
    }
  }

  plan_buckets();
  optimizer_ = optim::make_optimizer(
      cfg.ds.optimizer, part_.local_total,
      nvme_optimizer
          ? [&store = *nvme_optimizer](const std::string& name,
                                       size_t bytes) { return store.allocate(name, bytes); }
          : optim::state_allocator(device),
      ops_);
  schedule_ = std::make_unique<optim::LrSchedule>(
      cfg.ds.scheduler, cfg.ds.optimizer.lr, cfg.ds.optimizer.type != config::OptimizerType::kSgd);
  // DeepSpeed: ZeRO's scaler honours hysteresis; stage 0's FP16_Optimizer does not.
  scaler_ = optim::LossScaler::from_config(
      cfg.ds.fp16,
      stage_ == 0 ? optim::LossScaler::Kind::kFp16Optimizer : optim::LossScaler::Kind::kDynamic);
  buffers_ = std::make_unique<Buffers>(*this);
  if (model_.ops().device() != device) {
    // The model runs on a GPU, the states stay in host memory: serve it layer by layer.
    device_buffers_ =
        std::make_unique<model::DeviceLayerBuffers>(model_.layout(), model_.ops(), *buffers_);
  }
  inputs_ = Buffer(sizeof(int32_t) * micro_ * seq_len_, MemoryCategory::kActivations);
  targets_ = Buffer(sizeof(int32_t) * micro_ * seq_len_, MemoryCategory::kActivations);
  model_.reserve_range(stage_ctx_.first_layer, stage_ctx_.last_layer + 1, static_cast<int>(micro_),
                       static_cast<int>(seq_len_), stage_ctx_.activation_slots);
}

Engine::~Engine() = default;

float* Engine::master(int l) {
  if (mixed()) return master_.as<float>() + part_.layers[l].local_offset;
  // fp32: the parameters are the master weights.
  const LayerShard& s = dp_part_.layers[l];
  if (stage_ == 3) return params_.as<float>() + s.local_offset;
  return params_.as<float>() + s.full_offset + part_.layers[l].own.offset;
}

void Engine::plan_buckets() {
  const int num_layers = static_cast<int>(dp_part_.layers.size());
  const int world = comm_->size();
  plan_ = ReducePlan::from_config(cfg_.ds, dtype_, world);
  const int64_t bucket = cfg_.ds.zero.reduce_bucket_size;
  std::vector<int> order;
  if (stage_ >= 2) {
    // Filled by the backward walk, top layer first; the embedding goes last on its own
    // because the tied head adds to its gradient at the start of the walk.
    for (int l = num_layers - 1; l >= 1; --l) {
      if (held_[l]) order.push_back(l);
    }
    buckets_ = group_layers(dp_part_, order, bucket);
    if (held_[0]) buckets_.push_back({0});
  } else {
    for (int l = 0; l < num_layers; ++l) {
      if (held_[l]) order.push_back(l);
    }
    buckets_ = group_layers(dp_part_, order, bucket);
  }
  int64_t largest = 0;
  for (const std::vector<int>& b : buckets_) {
    const LayerShard& last = dp_part_.layers[b.back()];
    largest =
        std::max(largest, last.full_offset + last.padded - dp_part_.layers[b.front()].full_offset);
  }
  overlap_ = stage_ >= 2 && cfg_.ds.zero.overlap() && world > 1;
  if (stage_ >= 1) {
    // What a rank keeps of a reduced piece: stage 1 overwrites its piece of the full
    // gradient buffer (after the last micro-step); stages 2-3 add it to their own storage
    // (after every micro-step).
    BucketReducer::Deliver keep;
    if (stage_ == 1) {
      keep = [this](int l, const void* piece, DType wire, float scale) {
        const LayerShard& s = dp_part_.layers[l];
        ops_.convert_scaled(
            static_cast<char*>(grads_.data()) + esize() * (s.full_offset + s.own.offset), dtype_,
            piece, wire, s.own.size, scale);
      };
    } else {
      keep = [this](int l, const void* piece, DType wire, float scale) {
        const LayerShard& s = dp_part_.layers[l];
        ops_.add_scaled_into(static_cast<char*>(grads_.data()) + esize() * s.local_offset, dtype_,
                             piece, wire, s.own.size, scale);
      };
    }
    reducer_ = std::make_unique<BucketReducer>(buffer_comm(), ops_, dp_part_, plan_, largest,
                                               overlap_, comm_seconds_, std::move(keep));
  } else if (plan_.wire != dtype_ || plan_.scales()) {
    wire_ = ops_.allocate(tensor::dtype_size(plan_.wire) * largest, MemoryCategory::kCommunication);
  }
}

void Engine::reduce_gradients() {
  if (stage_ >= 2) return;  // reduced bucket by bucket during the backward
  char* storage = static_cast<char*>(grads_.data());
  for (const std::vector<int>& bucket : buckets_) {
    const LayerShard& first = dp_part_.layers[bucket.front()];
    const LayerShard& last = dp_part_.layers[bucket.back()];
    char* grads = storage + esize() * first.full_offset;
    if (stage_ == 1) {
      // Every rank keeps the full gradient buffer but only its pieces are reduced.
      reducer_->start(bucket, grads, dtype_);
      continue;
    }
    // Stage 0: the layers of a bucket lie back to back, so one all-reduce covers them.
    const int64_t n = last.full_offset + last.padded - first.full_offset;
    ScopedTimer timer(comm_seconds_);
    if (wire_.empty()) {
      buffer_comm().allreduce(grads, dtype_, n, plan_.op);
    } else {
      ops_.convert_scaled(wire_.data(), plan_.wire, grads, dtype_, n, plan_.pre);
      buffer_comm().allreduce(wire_.data(), plan_.wire, n, plan_.op);
      ops_.convert_scaled(grads, dtype_, wire_.data(), plan_.wire, n, plan_.post);
    }
  }
  if (reducer_) reducer_->finish();
}

const void* Engine::own_gradient(int l) const {
  const LayerShard& o = part_.layers[l];
  const LayerShard& s = dp_part_.layers[l];
  const int64_t offset = stage_ >= 2 ? s.local_offset : s.full_offset + o.own.offset;
  return static_cast<const char*>(grads_.data()) + esize() * offset;
}

std::pair<double, bool> Engine::gradient_norm() {
  // Each layer's sum of squares lands in layer_sums_ on the device; one download brings them
  // all, and the host adds them in layer order. The layers skipped here keep the zeros the
  // buffer was made with.
  double* layer_sums = layer_sums_.as<double>();
  for (size_t l = 0; l < part_.layers.size(); ++l) {
    const int64_t n = part_.layers[l].real_size();
    if (is_tied_copy(static_cast<int>(l)) || n == 0) continue;
    ops_.sum_of_squares_into(layer_sums + l, own_gradient(static_cast<int>(l)), dtype_, n);
  }
  ops_.download(host_layer_sums_.data(), layer_sums, sizeof(double) * host_layer_sums_.size());
  double sum = 0;
  for (double layer : host_layer_sums_) sum += layer;
  // Stage 0 ranks hold the same reduced gradient; above it each holds a disjoint piece.
  if (stage_ > 0) {
    ScopedTimer timer(comm_seconds_);
    sum = comm_->allreduce_sum(sum);
  }
  sum = pipe_sum(sum);
  const bool overflow = !std::isfinite(sum);
  return {std::sqrt(sum), overflow};
}

void Engine::update_parameters(double lr, double grad_scale) {
  char* params = static_cast<char*>(params_.data());
  for (size_t l = 0; l < part_.layers.size(); ++l) {
    const int layer = static_cast<int>(l);
    const LayerShard& o = part_.layers[l];
    const LayerShard& s = dp_part_.layers[l];
    const int64_t n = o.real_size();
    // The stored gradient, unscaled as it is read, and the 16-bit parameters rounded from the
    // updated master weights, in the update's one pass.
    tensor::StepIo io{own_gradient(layer), dtype_, static_cast<float>(grad_scale)};
    if (mixed()) {
      const int64_t param_offset = stage_ == 3 ? s.local_offset : s.full_offset + o.own.offset;
      io.params16 = params + esize() * param_offset;
      io.params16_dtype = dtype_;
    }
    optimizer_->step(master(layer), io, n, lr, applied_steps_, o.local_offset);
  }
}

void Engine::publish_parameters() {
  buffers_->invalidate();
  if (stage_ == 0 || stage_ == 3) return;  // stage 0 updated all; stage 3 gathers on use
  ScopedTimer timer(comm_seconds_);
  char* params = static_cast<char*>(params_.data());
  for (const LayerShard& s : dp_part_.layers) {
    if (s.numel == 0) continue;  // not held
    char* layer = params + esize() * s.full_offset;
    buffer_comm().allgather(layer + esize() * s.own.offset, layer, dtype_, s.own.size,
                            Mode::kBlocking);
  }
}

double Engine::pipe_sum(double value) {
  if (!stage_ctx_.pipe) return value;
  ScopedTimer timer(comm_seconds_);
  return stage_ctx_.pipe->allreduce_sum(value);
}

void Engine::reduce_tied_gradients() {
  if (!stage_ctx_.tied || !held_[0]) return;
  // Linear like the data-parallel mean, so summing the reduced pieces equals reducing
  // the summed gradients: both stages hold the same pieces of the embedding.
  const LayerShard& s = dp_part_.layers[0];
  char* grads = static_cast<char*>(grads_.data());
  DpComm& tied = stage_ctx_.device_tied ? *stage_ctx_.device_tied : *stage_ctx_.tied;
  ScopedTimer timer(comm_seconds_);
  switch (stage_) {
    case 0:
      tied.allreduce(grads + esize() * s.full_offset, dtype_, s.padded, Reduction::kSum);
      break;
    case 1:
      tied.allreduce(grads + esize() * (s.full_offset + s.own.offset), dtype_, s.own.size,
                     Reduction::kSum);
      break;
    default:
      tied.allreduce(grads + esize() * s.local_offset, dtype_, s.own.size, Reduction::kSum);
      break;
  }
}

float Engine::micro_batch_dloss(const int32_t* targets) const {
  const int64_t counted = model::count_targets(targets, micro_ * seq_len_);
  if (counted == 0) return 0.0f;  // nothing to learn from: no gradient
  return static_cast<float>(scaler_.scale() / (double(counted) * double(accum_)));
}

void Engine::begin_step() {
  ops_.begin_step();
  ops_.zero_bytes(grads_.data(), grads_.size());
  step_ = StepStats{};
  step_.loss_scale = scaler_.scale();
  comm_seconds_ = 0;
}

model::LayerBuffers& Engine::layer_buffers() {
  if (device_buffers_) return *device_buffers_;
  return *buffers_;
}

void Engine::add_times(double forward_s, double backward_s, double comm_s) {
  step_.forward_s += forward_s;
  step_.backward_s += backward_s;
  comm_seconds_ += comm_s;
}
void Engine::begin_forward() { buffers_->begin_forward(); }
void Engine::begin_backward() { buffers_->begin_backward(); }

void Engine::end_backward() {
  // The tied copy's gradient came from the head; the model never runs its layer here.
  if (stage_ctx_.tied_copy) buffers_->backward_done(0);
  buffers_->finish_backward();
}

StepStats Engine::train_step(const BatchFiller& fill) {
  begin_step();
  const int B = static_cast<int>(micro_), T = static_cast<int>(seq_len_);
  model::MicroBatch mb{inputs_.as<int32_t>(), targets_.as<int32_t>(), B, T, 0.0f};
  double loss_sum = 0;
  for (int m = 0; m < accum_; ++m) {
    fill(m, inputs_.as<int32_t>(), targets_.as<int32_t>());
    mb.dloss = micro_batch_dloss(mb.targets);
    auto start = Clock::now();
    begin_forward();
    loss_sum += model_.forward(mb, layer_buffers());
    step_.forward_s += seconds_since(start);
    start = Clock::now();
    begin_backward();
    model_.backward(mb, layer_buffers());
    end_backward();
    // On a GPU the kernels are only queued: wait, so that the time is the backward's (the next
    // micro-batch's upload would wait here anyway).
    model_.ops().sync();
    step_.backward_s += seconds_since(start);
  }
  return finish_step(loss_sum);
}

StepStats Engine::finish_step(double loss_sum) {
  StepStats stats = step_;
  {
    const auto start = Clock::now();
    reduce_gradients();
    reduce_tied_gradients();
    ScopedTimer timer(comm_seconds_);
    stats.loss = comm_->allreduce_sum(loss_sum / static_cast<double>(accum_)) / comm_->size();
    stats.backward_s += seconds_since(start);
  }
  stats.loss = pipe_sum(stats.loss);  // only the last stage computed it
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
  ops_.sync();  // the update's kernels, as above
  stats.optimizer_s = seconds_since(optimizer_start);
  stats.comm_s = comm_seconds_;
  return stats;
}

double Engine::eval_loss(const int32_t* inputs, const int32_t* targets) {
  const int B = static_cast<int>(micro_), T = static_cast<int>(seq_len_);
  model::MicroBatch mb{inputs, targets, B, T, 0.0f};
  buffers_->begin_forward();
  return model_.forward(mb, layer_buffers());
}

std::vector<float> Engine::full_parameters() {
  const model::ModelLayout& layout = model_.layout();
  std::vector<float> out(layout.total, 0.0f);
  for (size_t l = 0; l < dp_part_.layers.size(); ++l) {
    const int layer = static_cast<int>(l);
    const LayerShard& s = dp_part_.layers[l];
    if (s.numel == 0 || is_tied_copy(layer)) continue;
    float* dst = out.data() + s.layer_offset;
    if (mixed() && stage_ > 0) {
      // The fp32 master pieces, gathered: more precise than the 16-bit parameters.
      std::vector<float> piece(static_cast<size_t>(s.own.size));
      std::vector<float> full(static_cast<size_t>(s.padded));
      ops_.download(piece.data(), master(layer), sizeof(float) * piece.size());
      comm_->allgather(piece.data(), full.data(), DType::kF32, s.own.size, Mode::kBlocking);
      std::memcpy(dst, full.data(), sizeof(float) * s.numel);
    } else if (mixed()) {
      ops_.download(dst, master(layer), sizeof(float) * s.numel);
    } else {
      ops_.download(dst, buffers_->weights(layer), sizeof(float) * s.numel);
    }
  }
  buffers_->invalidate();
  // Each stage filled its own layers: summing over the pipeline assembles the model.
  if (stage_ctx_.pipe) {
    stage_ctx_.pipe->allreduce(out.data(), DType::kF32, static_cast<int64_t>(out.size()),
                               Reduction::kSum);
  }
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
    if (!held_[l]) continue;
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

float* Engine::host_master(int l) {
  if (ops_.device().is_cpu()) return master(l);
  return host_master_.as<float>() + part_.layers[l].local_offset;
}

float* Engine::host_state(const std::vector<optim::StateArray>& arrays, size_t a, int l) {
  float* base = ops_.device().is_cpu() ? arrays[a].data.data() : host_states_[a].as<float>();
  return base + part_.layers[l].local_offset;
}

void Engine::stage_states_to_host(const std::vector<optim::StateArray>& arrays) {
  if (ops_.device().is_cpu()) return;
  const int64_t n = part_.local_total;
  if (host_master_.empty()) {
    host_master_ = Buffer::floats(n, MemoryCategory::kOther);
    for (size_t a = 0; a < arrays.size(); ++a) {
      host_states_.push_back(Buffer::floats(n, MemoryCategory::kOther));
    }
  }
  for (size_t l = 0; l < part_.layers.size(); ++l) {
    const LayerShard& o = part_.layers[l];
    if (o.real_size() == 0) continue;
    ops_.download(host_master(static_cast<int>(l)), master(static_cast<int>(l)),
                  sizeof(float) * o.real_size());
  }
  for (size_t a = 0; a < arrays.size(); ++a) {
    ops_.download(host_states_[a].data(), arrays[a].data.data(), sizeof(float) * n);
  }
}

std::vector<StateSegment> Engine::state_segments() {
  std::vector<StateSegment> out;
  if (stage_ == 0 && comm_->rank() != 0) return out;
  const std::vector<optim::StateArray> arrays = optimizer_->state();
  stage_states_to_host(arrays);  // on a device: the segments point at host copies
  for_each_own_run(
      [&](int l, const model::ParamSpec& p, int64_t begin, int64_t length, int64_t in_piece) {
        if (is_tied_copy(l)) return;  // the first stage saves the embedding
        StateSegment s;
        s.param = p.name;
        s.begin = begin;
        s.length = length;
        s.master = host_master(l) + in_piece;
        for (size_t a = 0; a < arrays.size(); ++a) {
          s.optimizer.emplace_back(arrays[a].name, host_state(arrays, a, l) + in_piece);
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
          ops_.upload(dst, values->second.data() + begin, sizeof(float) * length);
        };
        copy("master", master(l) + in_piece);
        for (size_t a = 0; a < arrays.size(); ++a) {
          copy(arrays[a].name, arrays[a].data.data() + part_.layers[l].local_offset + in_piece);
        }
      });
  if (mixed()) {
    char* params = static_cast<char*>(params_.data());
    for (size_t l = 0; l < part_.layers.size(); ++l) {
      const LayerShard& o = part_.layers[l];
      const LayerShard& s = dp_part_.layers[l];
      const int64_t offset = stage_ == 3 ? s.local_offset : s.full_offset + o.own.offset;
      ops_.from_f32(params + esize() * offset, dtype_, master(static_cast<int>(l)), o.real_size());
    }
  }
  applied_steps_ = applied_steps;
  scaler_.load_state(scaler);
  publish_parameters();
}

MemoryReport Engine::memory_report() const {
  MemoryReport r;
  r.rank = stage_ctx_.world ? stage_ctx_.world->rank() : comm_->rank();
  r.stage = stage_;
  r.params_bytes = static_cast<int64_t>(params_.size()) + buffers_->persistent_bytes();
  r.nvme_bytes = static_cast<int64_t>(tensor::memory_bytes(MemoryCategory::kNvme));
  r.grads_bytes = static_cast<int64_t>(grads_.size());
  r.optimizer_bytes = static_cast<int64_t>(master_.size()) +
                      optimizer_->state_bytes_per_element() * part_.local_total;
  // The ZeRO paper's accounting: p and g bytes per parameter, o for master + moments.
  // Ψ: the parameters this rank's stage holds (the whole model without a pipeline).
  double psi = 0;
  for (const model::ParamSpec& param : model_.layout().params) {
    if (held_[param.layer]) psi += static_cast<double>(param.numel);
  }
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
