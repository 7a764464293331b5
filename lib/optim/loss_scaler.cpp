#include "optim/loss_scaler.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace ds::optim {

LossScaler LossScaler::fixed(double scale) {
  LossScaler s;
  s.kind_ = Kind::kStatic;
  s.state_.scale = scale;
  return s;
}

LossScaler LossScaler::dynamic(DynamicOptions options, Kind kind) {
  DS_CHECK(kind == Kind::kDynamic || kind == Kind::kFp16Optimizer,
           "a dynamic loss scaler needs a dynamic kind");
  DS_CHECK(options.window > 0 && options.min_scale > 0 && options.hysteresis >= 1,
           "invalid dynamic loss scaler options (window {}, min_scale {}, hysteresis {})",
           options.window, options.min_scale, options.hysteresis);
  LossScaler s;
  s.kind_ = kind;
  s.options_ = options;
  s.state_.scale = options.init_scale;
  s.state_.cur_hysteresis = options.hysteresis;
  return s;
}

LossScaler LossScaler::from_config(const config::Fp16Config& fp16, Kind dynamic_kind) {
  if (!fp16.enabled) return LossScaler();
  if (fp16.loss_scale > 0) return fixed(fp16.loss_scale);
  DynamicOptions o;
  o.init_scale = std::ldexp(1.0, static_cast<int>(fp16.initial_scale_power));
  o.window = fp16.loss_scale_window;
  o.min_scale = fp16.min_loss_scale;
  o.hysteresis = fp16.hysteresis;
  o.consecutive_hysteresis = fp16.consecutive_hysteresis;
  return dynamic(o, dynamic_kind);
}

void LossScaler::update(bool overflow) {
  if (!is_dynamic()) return;
  LossScalerState& s = state_;
  if (overflow) {
    if (kind_ == Kind::kFp16Optimizer) {
      s.scale = std::max(s.scale / 2, options_.min_scale);
    } else if (options_.hysteresis == 1 || s.cur_hysteresis == 1) {
      if (s.scale == options_.min_scale) {
        throw Error(
            "Current loss scale already at minimum - cannot decrease scale anymore. Exiting run.",
            "the fp16 gradients overflow even at fp16.min_loss_scale " +
                fmt::format("{}", options_.min_scale) +
                "; lower the learning rate, lower min_loss_scale, or train in bf16");
      }
      s.scale = std::max(s.scale / 2, options_.min_scale);
    } else {
      s.cur_hysteresis -= 1;
    }
    s.last_overflow_iter = s.cur_iter;
  } else {
    const bool hysteresis_used = kind_ == Kind::kDynamic;
    if (hysteresis_used && options_.consecutive_hysteresis) s.cur_hysteresis = options_.hysteresis;
    const int64_t stable = s.cur_iter - s.last_overflow_iter - 1;
    if (stable > 0 && stable % options_.window == 0) {
      if (hysteresis_used && !options_.consecutive_hysteresis) {
        s.cur_hysteresis = options_.hysteresis;
      }
      s.scale *= 2;
    }
  }
  s.cur_iter += 1;
}

}  // namespace ds::optim
