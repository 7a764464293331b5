// DeepSpeed's learning-rate schedules (deepspeed/runtime/lr_schedules.py) as pure
// functions of the optimizer step, so a resumed run needs only the step count.
//
// Timing, exactly as DeepSpeed's engine drives a schedule: the constructor writes the lr
// of iteration -1 into the optimizer, and scheduler.step() runs after every *applied*
// optimizer step (an fp16 overflow skips both). So the n-th applied step (n = 1, 2, ...)
// runs with the lr of iteration it = n - 2; it = -1 is the constructor's value. For the
// warmup schedules it = -1 and it = 0 give the same minimum, so steps 1 and 2 share it
// (WarmupCosineLR is the exception: it = -1 gives lr 0, so step 1 runs with lr 0).
//
// OneCycle also cycles Adam's beta1 (DeepSpeed calls it momentum) and, while it does,
// forces beta2 to 0.99 for the whole run; optimizers without betas (SGD) keep their
// momentum, as DeepSpeed disables momentum cycling for them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "config/ds_config.h"

namespace ds::optim {

class LrSchedule {
 public:
  // base_lr: the optimizer's lr (the constant lr without a schedule, WarmupCosineLR's
  // org_lr). optimizer_has_betas: false for SGD, which turns OneCycle's momentum off.
  LrSchedule(config::SchedulerConfig scheduler, double base_lr, bool optimizer_has_betas = true);

  // The lr that the `applied_step`-th applied optimizer step (1 for the first) uses.
  double lr_at(int64_t applied_step) const { return lr_at_iteration(iteration_of(applied_step)); }
  // OneCycle with momentum cycling: the beta1 that step uses; otherwise nullopt (the
  // optimizer's own beta1 applies).
  std::optional<double> beta1_at(int64_t applied_step) const {
    return beta1_at_iteration(iteration_of(applied_step));
  }
  // OneCycle with momentum cycling: 0.99, which DeepSpeed writes into every group's
  // beta2 at construction and keeps; otherwise nullopt.
  std::optional<double> beta2_override() const;
  bool cycles_momentum() const { return cycle_momentum_; }

  // DeepSpeed's get_lr() at last_batch_iteration `it` (-1: the constructor's value).
  double lr_at_iteration(int64_t it) const;
  std::optional<double> beta1_at_iteration(int64_t it) const;

  // DeepSpeed's name of the schedule, "" for none.
  std::string name() const { return config::scheduler_name(scheduler_); }

  // The scheduler iteration in effect during an applied step.
  static int64_t iteration_of(int64_t applied_step) { return applied_step - 2; }

 private:
  double one_cycle_scale(int64_t it) const;

  config::SchedulerConfig scheduler_;
  double base_lr_;
  bool cycle_momentum_ = false;
};

}  // namespace ds::optim
