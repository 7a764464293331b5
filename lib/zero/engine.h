// The ZeRO training engine: owns the model states of one data-parallel rank and
// runs optimizer steps over the model's layers.
//
// Storage per rank (Ψ parameters, N data-parallel ranks, 16-bit p/g = 2 bytes):
//   stage 0: full params and grads; fp32 master + Adam moments for everything
//   stage 1: full params and grads; master + moments for the own pieces only
//   stage 2: full params; grads, master and moments for the own pieces only
//   stage 3: params too only for the own pieces, gathered layer by layer
// In fp32 runs the parameters are the master weights (no second copy), as in
// DeepSpeed. Compute is always fp32: a 16-bit layer is up-cast into a work buffer
// just before it runs, and its gradient reduced/stored as soon as its backward ends.
//
// Where the states live: with the model's device when the model runs on a GPU (every
// buffer below, and every cast, norm and update, through the model's tensor::Ops; the
// collectives over NCCL, or staged through host memory by DeviceStagedComm), in host memory
// otherwise — and also on a GPU when the config offloads the optimizer or parameters
// (ZeRO-Offload), in which case the model is served layer by layer
// (model/device_layer_buffers.h).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/train_config.h"
#include "model/device_layer_buffers.h"
#include "model/gpt.h"
#include "optim/loss_scaler.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"
#include "tensor/memory.h"
#include "zero/dp_comm.h"
#include "zero/grad_reduce.h"
#include "zero/shard.h"

namespace ds::zero {

struct StepStats {
  double loss = 0;        // mean over the global batch, before the update
  double grad_norm = 0;   // global, unscaled, before clipping
  double lr = 0;          // the lr the update used (0 when skipped)
  bool skipped = false;   // fp16 overflow (or bf16 non-finite gradients)
  double loss_scale = 1;  // the scale this step ran with
  // Wall-clock seconds (DeepSpeed's wall_clock_breakdown): forward and backward include
  // the gathers/reductions they wait for; comm_s is all collective time of the step.
  double forward_s = 0;
  double backward_s = 0;
  double optimizer_s = 0;  // norm, clipping, update, publishing the new weights
  double comm_s = 0;
};

// Model-state bytes on this rank, and what the ZeRO paper predicts for them.
struct MemoryReport {
  int rank = 0;
  int stage = 0;
  int64_t params_bytes = 0;
  int64_t grads_bytes = 0;
  int64_t optimizer_bytes = 0;  // fp32 master weights + optimizer moments
  int64_t model_states_bytes() const { return params_bytes + grads_bytes + optimizer_bytes; }
  int64_t predicted_model_states_bytes = 0;
  int64_t nvme_bytes = 0;  // of those, in files under nvme_path (offload to nvme)
};

// A run of one parameter's elements held by this rank, as checkpoints store it: the
// fp32 master weights and each optimizer state array over the same elements.
struct StateSegment {
  std::string param;  // Hugging Face name
  int64_t begin = 0;  // first element within the parameter
  int64_t length = 0;
  float* master = nullptr;
  std::vector<std::pair<std::string, float*>> optimizer;  // "exp_avg", "exp_avg_sq", ...
};

// Every parameter complete: state name ("master", "exp_avg", ...) → values, by parameter.
using FullState = std::map<std::string, std::map<std::string, std::vector<float>>>;

// Where a run's starting weights come from: dst[0, count) = the full fp32 parameters'
// flat elements [offset, offset + count). A rank asks only for what it keeps (at ZeRO-3,
// its own pieces), so a reader of files can read just that.
using InitialWeights = std::function<void(int64_t offset, int64_t count, float* dst)>;

// Fills the inputs and targets ([MB, T] each) of micro-step `micro` of this rank.
using BatchFiller = std::function<void(int micro, int32_t* inputs, int32_t* targets)>;

// Whether the engine keeps its states on the model's device: a GPU's (or the emulated one's),
// unless the config offloads the optimizer or the parameters (ZeRO-Offload).
bool states_on_device(const config::TrainConfig& cfg, const tensor::Device& model_device);

// Where this rank sits in a pipeline (DESIGN.md's pipe x data grid). Without one the
// defaults say: every layer, no other stages.
struct StageContext {
  int first_layer = 0;
  int last_layer = -1;            // inclusive; -1: the model's last layer
  bool tied_copy = false;         // the last stage holds the embedding too, for the tied head
  int activation_slots = 1;       // micro-batches in flight on this stage (pipe buffers)
  std::shared_ptr<DpComm> pipe;   // this rank's pipeline: losses and norms sum over it
  std::shared_ptr<DpComm> tied;   // first + last stage: the tied embedding's gradients
  std::shared_ptr<DpComm> world;  // every rank: agreement, checkpoints
  // The data-parallel group's collectives on device buffers when the device has a transport
  // of its own (NCCL: zero/nccl_device_comm.h); null: staged through host memory over the
  // engine's comm (DeviceStagedComm, which the engine makes). Only for states on a device
  // (states_on_device).
  std::shared_ptr<DpComm> device_data;
  std::shared_ptr<DpComm> device_tied;  // the same for `tied`
};

class Engine {
 public:
  // The engine keeps what its stage keeps of the weights every rank starts from.
  Engine(const config::TrainConfig& cfg, model::Gpt& model, const InitialWeights& initial,
         std::unique_ptr<DpComm> comm, StageContext stage = {});
  // `initial`: the full fp32 parameters (layout.total floats); the caller may free them.
  Engine(const config::TrainConfig& cfg, model::Gpt& model, const float* initial,
         std::unique_ptr<DpComm> comm, StageContext stage = {});
  ~Engine();

  // One optimizer step over gradient_accumulation_steps micro-batches (no pipeline).
  StepStats train_step(const BatchFiller& fill);
  // Mean loss of one micro-batch, without gradients (no pipeline).
  double eval_loss(const int32_t* inputs, const int32_t* targets);

  // The same step in pieces, for an executor that drives the model itself (a pipeline
  // stage): begin_step, then per micro-batch begin_forward + the model's forward with
  // layer_buffers(), begin_backward + backward + end_backward, then finish_step with the
  // sum of the micro-batch losses this rank computed (0 off the last stage).
  void begin_step();
  model::LayerBuffers& layer_buffers();
  void begin_forward();
  void begin_backward();
  void end_backward();
  StepStats finish_step(double loss_sum);
  // d(objective)/d(loss at one position) for a micro-batch with these targets ([MB, T]):
  // each micro-batch's loss is the mean over its positions with a target.
  float micro_batch_dloss(const int32_t* targets) const;
  // Time the executor spent in this step's forwards, backwards and point-to-point sends.
  void add_times(double forward_s, double backward_s, double comm_s);

  // The full fp32 parameters of the held layers (gathered over the data-parallel group),
  // zero elsewhere; with a pipeline, every stage's layers (summed over the pipeline).
  std::vector<float> full_parameters();
  MemoryReport memory_report() const;
  int64_t applied_steps() const { return applied_steps_; }

  // Checkpoints: this rank's segments (empty on ranks > 0 at stage 0, where every rank
  // holds the same state), and loading a complete state saved on any layout.
  std::vector<StateSegment> state_segments();
  std::vector<std::string> optimizer_state_names();
  void load_state(const FullState& state, int64_t applied_steps,
                  const optim::LossScalerState& scaler);
  const optim::LossScaler& loss_scaler() const { return scaler_; }
  // This stage's data-parallel group, and every rank of the run.
  DpComm& comm() { return *comm_; }
  DpComm& world_comm() { return stage_ctx_.world ? *stage_ctx_.world : *comm_; }
  bool holds(int layer) const { return held_[layer]; }
  const model::ModelLayout& layout() const { return model_.layout(); }

 private:
  class Buffers;
  friend class Buffers;

  bool mixed() const { return dtype_ != tensor::DType::kF32; }
  // The last stage's copy of the embedding: held for the tied head, but counted (norm,
  // checkpoints, export) on the first stage only.
  bool is_tied_copy(int layer) const { return layer == 0 && stage_ctx_.tied_copy; }
  // Sums the tied embedding's gradient over the first and last stage.
  void reduce_tied_gradients();
  // Sums over the pipeline's stages (identity without one).
  double pipe_sum(double value);
  size_t esize() const { return tensor::dtype_size(dtype_); }
  // Where the fp32 master weights of layer l's own piece live.
  float* master(int l);
  // Groups the layers into reduce_bucket_size buckets and sets up their reduction.
  void plan_buckets();
  // Stages 0-1: reduces the accumulated gradients after the last micro-step.
  void reduce_gradients();
  // Global grad norm, and whether any gradient is inf/NaN, over the own pieces.
  std::pair<double, bool> gradient_norm();
  void update_parameters(double lr, double grad_scale);
  void publish_parameters();
  // Calls visit(layer, param, begin in param, length, offset in the own piece) for every
  // run of a parameter's elements inside this rank's own pieces.
  using OwnRunVisitor =
      std::function<void(int, const model::ParamSpec&, int64_t, int64_t, int64_t)>;
  void for_each_own_run(const OwnRunVisitor& visit) const;

  // The comm for collectives on the engine's buffers (which may be on a device); comm_
  // itself serves host memory and scalars.
  DpComm& buffer_comm() { return stage_ctx_.device_data ? *stage_ctx_.device_data : *comm_; }
  // Saving a checkpoint on a device: the own pieces' master weights and optimizer states
  // (`arrays`, optimizer_->state()) copied to host memory, indexed like the optimizer's states
  // (part_'s local offsets). Loading uploads straight into the states.
  void stage_states_to_host(const std::vector<optim::StateArray>& arrays);
  // Layer l's own piece of the reduced gradient, where it is stored (in the storage dtype).
  const void* own_gradient(int l) const;
  float* host_master(int l);
  float* host_state(const std::vector<optim::StateArray>& arrays, size_t a, int l);

  const config::TrainConfig& cfg_;
  model::Gpt& model_;
  std::unique_ptr<DpComm> comm_;
  StageContext stage_ctx_;
  tensor::Ops& ops_;        // where the model states live and are computed on
  std::vector<bool> held_;  // the layers this rank holds
  int stage_;
  tensor::DType dtype_;
  Partition part_;     // this rank's pieces (world 1 at stage 0: it updates everything)
  Partition dp_part_;  // the pieces as the data-parallel group splits them
  int64_t micro_, seq_len_, accum_;

  tensor::Buffer params_;      // full (stages 0-2) or own pieces (stage 3), storage dtype
  tensor::Buffer grads_;       // full (stages 0-1) or own pieces (stages 2-3), storage dtype
  tensor::Buffer master_;      // fp32 own pieces; empty in fp32 runs
  tensor::Buffer layer_sums_;  // the norm: each layer's sum of squares, on the device
  std::vector<double> host_layer_sums_;  // and their copy on the host
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::unique_ptr<optim::LrSchedule> schedule_;
  optim::LossScaler scaler_;
  ReducePlan plan_;
  std::vector<std::vector<int>> buckets_;   // layer groups reduced with one collective each
  bool overlap_ = false;                    // overlap_comm at stages 2-3 with several ranks
  std::unique_ptr<BucketReducer> reducer_;  // stages 1-3
  tensor::Buffer wire_;                     // stage 0: gradients converted or scaled for the wire
  std::unique_ptr<Buffers> buffers_;
  // When the model runs on a GPU: buffers_ served to it there.
  std::unique_ptr<model::DeviceLayerBuffers> device_buffers_;
  tensor::Buffer inputs_, targets_;
  // Device states' host copies for checkpoints (empty until the first save or load).
  tensor::Buffer host_master_;
  std::vector<tensor::Buffer> host_states_;
  int64_t applied_steps_ = 0;
  double comm_seconds_ = 0;  // collective time of the current step
  StepStats step_;           // the step being run (timers, loss scale)
};

}  // namespace ds::zero
