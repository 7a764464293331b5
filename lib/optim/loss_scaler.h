// fp16 loss scaling as DeepSpeed does it (deepspeed/runtime/fp16/loss_scaler.py).
//
// Dynamic (fp16.loss_scale == 0): DeepSpeed's DynamicLossScaler, which ZeRO stages 1-3
// use. update(overflow) is called once per optimizer step, after the overflow check:
//   overflow:  if hysteresis == 1 or cur_hysteresis == 1:
//                 at min_scale already -> ds::Error (DeepSpeed raises and ends the run)
//                 scale = max(scale / 2, min_scale)
//              else cur_hysteresis -= 1           (scale kept, step still skipped)
//              last_overflow_iter = cur_iter
//   no overflow: consecutive_hysteresis: cur_hysteresis = hysteresis (every good step)
//              stable = cur_iter - last_overflow_iter - 1
//              if stable > 0 and stable % window == 0:
//                 if not consecutive_hysteresis: cur_hysteresis = hysteresis
//                 scale *= 2
//   cur_iter += 1
// cur_hysteresis is not refilled by a decrease, so after one it stays at 1 and every
// further overflow halves the scale until a refill.
//
// Kind::kFp16Optimizer is the variant in DeepSpeed's non-ZeRO FP16_Optimizer, which
// ignores hysteresis: every overflow halves (bounded by min_scale, never raising).
//
// Static (fp16.loss_scale > 0): the scale never changes; an overflowing step is still
// skipped. Without fp16 the scale is 1. Every overflow skips the optimizer step and the
// LR scheduler step; the caller does that, this class only tracks the scale.
#pragma once

#include <cstdint>

#include "config/ds_config.h"

namespace ds::optim {

// Everything a checkpoint needs to resume the scaler exactly.
struct LossScalerState {
  double scale = 1;
  int64_t cur_iter = 0;
  int64_t last_overflow_iter = -1;
  int64_t cur_hysteresis = 1;
};

class LossScaler {
 public:
  enum class Kind { kNone, kStatic, kDynamic, kFp16Optimizer };

  struct DynamicOptions {
    double init_scale = 65536;
    int64_t window = 1000;
    double min_scale = 1;
    int64_t hysteresis = 2;  // DeepSpeed's delayed_shift
    bool consecutive_hysteresis = false;
  };

  // Scale 1, never changes (fp32 and bf16 runs).
  LossScaler() = default;
  static LossScaler fixed(double scale);
  static LossScaler dynamic(DynamicOptions options, Kind kind = Kind::kDynamic);
  // From the ds_config fp16 section: none when disabled, static when loss_scale > 0,
  // otherwise dynamic with init_scale = 2^initial_scale_power.
  static LossScaler from_config(const config::Fp16Config& fp16, Kind dynamic_kind = Kind::kDynamic);

  double scale() const { return state_.scale; }
  Kind kind() const { return kind_; }
  bool is_dynamic() const { return kind_ == Kind::kDynamic || kind_ == Kind::kFp16Optimizer; }

  // Records one optimizer step's overflow check. Throws ds::Error when an overflow
  // happens with the dynamic scale already at its minimum.
  void update(bool overflow);

  const LossScalerState& state() const { return state_; }
  void load_state(const LossScalerState& state) { state_ = state; }

 private:
  Kind kind_ = Kind::kNone;
  DynamicOptions options_;
  LossScalerState state_;
};

}  // namespace ds::optim
