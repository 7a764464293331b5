// Formulas follow deepspeed/runtime/lr_schedules.py term by term (including the order of
// floating-point operations) so that lrs agree with DeepSpeed's to the last bit or two.
#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <type_traits>

namespace ds::optim {
namespace {

using config::WarmupType;

// DeepSpeed clamps the warmup length to at least 2 so that log(W') is not zero.
double warmup_steps(int64_t warmup_num_steps) {
  return static_cast<double>(std::max<int64_t>(2, warmup_num_steps));
}

// The warmup fraction at iteration it (0 <= it < W').
double warmup_gamma(WarmupType type, double warmup, int64_t it) {
  if (type == WarmupType::kLog) {
    const double inverse_log_warm_up = 1.0 / std::log(warmup);
    return inverse_log_warm_up * std::log(static_cast<double>(it + 1));
  }
  return static_cast<double>(it) / warmup;
}

double warmup_lr(const config::WarmupLRParams& p, int64_t it) {
  if (it < 0) return p.warmup_min_lr;
  const double warmup = warmup_steps(p.warmup_num_steps);
  const double gamma =
      static_cast<double>(it) < warmup ? warmup_gamma(p.warmup_type, warmup, it) : 1.0;
  return p.warmup_min_lr + (p.warmup_max_lr - p.warmup_min_lr) * gamma;
}

double warmup_decay_lr(const config::WarmupDecayLRParams& p, int64_t it) {
  if (it < 0) return p.warmup_min_lr;
  const double warmup = warmup_steps(p.warmup_num_steps);
  double gamma;
  if (static_cast<double>(it) < warmup) {
    gamma = warmup_gamma(p.warmup_type, warmup, it);
  } else {
    const double total = static_cast<double>(p.total_num_steps);
    gamma = std::max(0.0, (total - static_cast<double>(it)) / std::max(1.0, total - warmup));
  }
  return p.warmup_min_lr + (p.warmup_max_lr - p.warmup_min_lr) * gamma;
}

double warmup_cosine_lr(const config::WarmupCosineLRParams& p, double org_lr, int64_t it) {
  // DeepSpeed returns lr 0 before the first scheduler.step(), so step 1 does not move.
  if (it < 0) return 0.0;
  const double warmup = warmup_steps(p.warmup_num_steps);
  double ratio;
  if (static_cast<double>(it) < warmup) {
    ratio = warmup_gamma(p.warmup_type, warmup, it);
    ratio = p.warmup_min_ratio + ratio * (1.0 - p.warmup_min_ratio);
  } else {
    const double real_last_step = static_cast<double>(it) - warmup + 1;
    const double real_total_steps = std::max(1.0, static_cast<double>(p.total_num_steps) - warmup);
    const double progress = std::min(1.0, real_last_step / real_total_steps);
    ratio = (1 + std::cos(std::numbers::pi * progress)) / 2;
    ratio = std::max(0.0, p.cos_min_ratio + (1.0 - p.cos_min_ratio) * ratio);
  }
  return org_lr * ratio;
}

double range_test_lr(const config::LRRangeTestParams& p, int64_t it) {
  if (it < 0) return p.lr_range_test_min_lr;
  double interval = static_cast<double>(it + 1) / static_cast<double>(p.lr_range_test_step_size);
  if (p.lr_range_test_staircase) interval = std::floor(interval);
  return p.lr_range_test_min_lr * (1 + p.lr_range_test_step_rate * interval);
}

}  // namespace

LrSchedule::LrSchedule(config::SchedulerConfig scheduler, double base_lr, bool optimizer_has_betas)
    : scheduler_(std::move(scheduler)), base_lr_(base_lr) {
  if (const auto* c = std::get_if<config::OneCycleParams>(&scheduler_)) {
    cycle_momentum_ = c->cycle_momentum && optimizer_has_betas;
  }
}

std::optional<double> LrSchedule::beta2_override() const {
  if (cycle_momentum_) return 0.99;
  return std::nullopt;
}

// OneCycle's _get_scale_factor: where iteration it sits in the triangle of the cycle.
double LrSchedule::one_cycle_scale(int64_t it) const {
  const auto& c = std::get<config::OneCycleParams>(scheduler_);
  const double first = static_cast<double>(c.cycle_first_step_size);
  const double second = static_cast<double>(c.cycle_second_step_size);
  const double total = first + second;
  const double step_ratio = first / total;
  const double batch_iteration = static_cast<double>(it + 1);
  const double cycle = std::floor(1 + batch_iteration / total);
  const double x = 1. + batch_iteration / total - cycle;
  double scale;
  int64_t stair_count;
  if (x <= step_ratio) {
    scale = x / step_ratio;
    stair_count = c.cycle_first_stair_count;
  } else {
    scale = (x - 1) / (step_ratio - 1);
    stair_count = c.cycle_second_stair_count;
  }
  if (stair_count > 0) {
    // Quantised from the integer offset into the cycle, as DeepSpeed does, so a stair
    // boundary is never lost to the rounding of `scale`.
    const double stairs = static_cast<double>(stair_count);
    const double cycle_iteration = std::fmod(batch_iteration, total);
    const double position = cycle_iteration <= first ? cycle_iteration * stairs / first
                                                     : (total - cycle_iteration) * stairs / second;
    scale = std::floor(position) / stairs;
  }
  return scale;
}

double LrSchedule::lr_at_iteration(int64_t it) const {
  return std::visit(
      [&](const auto& p) -> double {
        using P = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<P, std::monostate>) {
          return base_lr_;
        } else if constexpr (std::is_same_v<P, config::WarmupLRParams>) {
          return warmup_lr(p, it);
        } else if constexpr (std::is_same_v<P, config::WarmupDecayLRParams>) {
          return warmup_decay_lr(p, it);
        } else if constexpr (std::is_same_v<P, config::WarmupCosineLRParams>) {
          return warmup_cosine_lr(p, base_lr_, it);
        } else if constexpr (std::is_same_v<P, config::OneCycleParams>) {
          // The constructor writes cycle_min_lr, which is also the cycle's value at it = -1.
          if (it < 0) return p.cycle_min_lr;
          const double total =
              static_cast<double>(p.cycle_first_step_size + p.cycle_second_step_size);
          if (static_cast<double>(it) < total) {
            return p.cycle_min_lr + (p.cycle_max_lr - p.cycle_min_lr) * one_cycle_scale(it);
          }
          if (p.decay_step_size == 0 || p.decay_lr_rate == 0) return p.cycle_min_lr;
          const double decay_iteration = static_cast<double>(it) - total + 1;
          const double interval = decay_iteration / static_cast<double>(p.decay_step_size);
          return p.cycle_min_lr / (1 + p.decay_lr_rate * interval);
        } else {
          return range_test_lr(p, it);
        }
      },
      scheduler_);
}

std::optional<double> LrSchedule::beta1_at_iteration(int64_t it) const {
  if (!cycle_momentum_) return std::nullopt;
  const auto& p = std::get<config::OneCycleParams>(scheduler_);
  // Unlike the lr, the constructor's beta1 (cycle_min_mom) is not the cycle's value at
  // it = -1 (which would be cycle_max_mom): DeepSpeed writes min_moms at construction.
  if (it < 0) return p.cycle_min_mom;
  const double total = static_cast<double>(p.cycle_first_step_size + p.cycle_second_step_size);
  if (static_cast<double>(it) < total) {
    return p.cycle_max_mom - (p.cycle_max_mom - p.cycle_min_mom) * one_cycle_scale(it);
  }
  if (p.decay_step_size == 0 || p.decay_mom_rate == 0) return p.cycle_max_mom;
  const double decay_iteration = static_cast<double>(it) - total + 1;
  const double interval = decay_iteration / static_cast<double>(p.decay_step_size);
  return p.cycle_max_mom * (1 + p.decay_mom_rate * interval);
}

}  // namespace ds::optim
