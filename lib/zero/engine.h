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
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/train_config.h"
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

// Fills the inputs and targets ([MB, T] each) of micro-step `micro` of this rank.
using BatchFiller = std::function<void(int micro, int32_t* inputs, int32_t* targets)>;

class Engine {
 public:
  // `initial` holds the full fp32 parameters (layout.total floats) every rank starts
  // from; the engine keeps what its stage keeps and the caller may free it.
  Engine(const config::TrainConfig& cfg, model::Gpt& model, const float* initial,
         std::unique_ptr<DpComm> comm);
  ~Engine();

  // One optimizer step over gradient_accumulation_steps micro-batches.
  StepStats train_step(const BatchFiller& fill);
  // Mean loss of one micro-batch, without gradients.
  double eval_loss(const int32_t* inputs, const int32_t* targets);

  // The full fp32 parameters (gathered on every rank), e.g. to export weights.
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
  DpComm& comm() { return *comm_; }
  const model::ModelLayout& layout() const { return model_.layout(); }

 private:
  class Buffers;
  friend class Buffers;

  bool mixed() const { return dtype_ != tensor::DType::kF32; }
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

  const config::TrainConfig& cfg_;
  model::Gpt& model_;
  std::unique_ptr<DpComm> comm_;
  int stage_;
  tensor::DType dtype_;
  Partition part_;     // this rank's pieces (world 1 at stage 0: it updates everything)
  Partition dp_part_;  // the pieces as the data-parallel group splits them
  int64_t micro_, seq_len_, accum_;

  tensor::Buffer params_;    // full (stages 0-2) or own pieces (stage 3), storage dtype
  tensor::Buffer grads_;     // full (stages 0-1) or own pieces (stages 2-3), storage dtype
  tensor::Buffer master_;    // fp32 own pieces; empty in fp32 runs
  tensor::Buffer own_grad_;  // fp32 gradient of one own piece, for the norm and the update
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::unique_ptr<optim::LrSchedule> schedule_;
  optim::LossScaler scaler_;
  ReducePlan plan_;
  std::vector<std::vector<int>> buckets_;   // layer groups reduced with one collective each
  bool overlap_ = false;                    // overlap_comm at stages 2-3 with several ranks
  std::unique_ptr<BucketReducer> reducer_;  // stages 1-3
  tensor::Buffer wire_;                     // stage 0: gradients converted or scaled for the wire
  std::unique_ptr<Buffers> buffers_;
  tensor::Buffer inputs_, targets_;
  int64_t applied_steps_ = 0;
  double comm_seconds_ = 0;  // collective time of the current step
};

}  // namespace ds::zero
