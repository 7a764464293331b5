// LR schedules against values worked out by hand from deepspeed/runtime/lr_schedules.py.
// Step n (the n-th applied optimizer step) runs at scheduler iteration it = n - 2.
#include "optim/lr_schedule.h"

#include <catch2/catch.hpp>

using ds::config::WarmupType;
using ds::optim::LrSchedule;

TEST_CASE("no scheduler keeps the optimizer's lr", "[lr]") {
  LrSchedule s(std::monostate{}, 3e-4);
  CHECK(s.lr_at(1) == 3e-4);
  CHECK(s.lr_at(1000) == 3e-4);
  CHECK_FALSE(s.beta1_at(5).has_value());
  CHECK_FALSE(s.beta2_override().has_value());
  CHECK(s.name().empty());
}

TEST_CASE("step timing: step n uses iteration n - 2", "[lr]") {
  CHECK(LrSchedule::iteration_of(1) == -1);
  CHECK(LrSchedule::iteration_of(2) == 0);
  CHECK(LrSchedule::iteration_of(12) == 10);
}

TEST_CASE("WarmupLR, log warmup", "[lr]") {
  ds::config::WarmupLRParams p;
  p.warmup_min_lr = 0.0;
  p.warmup_max_lr = 0.01;
  p.warmup_num_steps = 10;  // W' = max(2, 10) = 10
  p.warmup_type = WarmupType::kLog;
  LrSchedule s(p, 0.5);
  CHECK(s.name() == "WarmupLR");
  CHECK(s.lr_at(1) == 0.0);  // it = -1: min_lr (constructor)
  CHECK(s.lr_at(2) == 0.0);  // it = 0: ln(1)/ln(10) = 0
  // it = 1: 0.01 * ln(2)/ln(10) = 0.0030102999566398
  CHECK(s.lr_at(3) == Approx(0.0030102999566398).epsilon(1e-12));
  // it = 9: ln(10)/ln(10) = 1
  CHECK(s.lr_at(11) == Approx(0.01).epsilon(1e-12));
  CHECK(s.lr_at(12) == 0.01);  // it = 10 >= W': gamma = 1
  CHECK(s.lr_at(500) == 0.01);
}

TEST_CASE("WarmupLR, linear warmup", "[lr]") {
  ds::config::WarmupLRParams p;
  p.warmup_min_lr = 0.001;
  p.warmup_max_lr = 0.011;
  p.warmup_num_steps = 4;
  p.warmup_type = WarmupType::kLinear;
  LrSchedule s(p, 0.5);
  CHECK(s.lr_at(1) == 0.001);
  CHECK(s.lr_at(2) == 0.001);                          // it = 0: 0/4
  CHECK(s.lr_at(3) == Approx(0.0035).epsilon(1e-12));  // it = 1: 0.001 + 0.01 * 1/4
  CHECK(s.lr_at(5) == Approx(0.0085).epsilon(1e-12));  // it = 3: 0.001 + 0.01 * 3/4
  CHECK(s.lr_at(6) == Approx(0.011).epsilon(1e-12));   // it = 4 = W': 1

  p.warmup_num_steps = 1;  // W' = max(2, 1) = 2
  LrSchedule short_warmup(p, 0.5);
  CHECK(short_warmup.lr_at(3) == Approx(0.006).epsilon(1e-12));  // it = 1: 0.001 + 0.01/2
}

TEST_CASE("WarmupDecayLR", "[lr]") {
  ds::config::WarmupDecayLRParams p;
  p.total_num_steps = 20;
  p.warmup_min_lr = 0.0;
  p.warmup_max_lr = 0.01;
  p.warmup_num_steps = 5;
  p.warmup_type = WarmupType::kLinear;
  LrSchedule s(p, 0.5);
  CHECK(s.lr_at(1) == 0.0);
  CHECK(s.lr_at(4) == Approx(0.004).epsilon(1e-12));  // it = 2: 2/5
  // it >= W': gamma = max(0, (T - it) / max(1, T - W')) = (20 - it) / 15
  CHECK(s.lr_at(7) == Approx(0.01).epsilon(1e-12));               // it = 5: 15/15
  CHECK(s.lr_at(12) == Approx(0.01 * 10.0 / 15).epsilon(1e-12));  // it = 10: 10/15
  CHECK(s.lr_at(22) == 0.0);                                      // it = 20: 0
  CHECK(s.lr_at(27) == 0.0);                                      // it = 25: max(0, -5/15)

  p.total_num_steps = 3;  // T < W': DeepSpeed only warns; max(1, T - W') = 1
  LrSchedule short_total(p, 0.5);
  CHECK(short_total.lr_at(7) == 0.0);  // it = 5: max(0, (3 - 5) / 1)
}

TEST_CASE("WarmupCosineLR", "[lr]") {
  ds::config::WarmupCosineLRParams p;
  p.total_num_steps = 20;
  p.warmup_min_ratio = 0.1;
  p.warmup_num_steps = 5;
  p.cos_min_ratio = 0.0001;
  p.warmup_type = WarmupType::kLog;
  LrSchedule s(p, 0.1);                              // org_lr = 0.1
  CHECK(s.lr_at(1) == 0.0);                          // it = -1: DeepSpeed returns lr 0
  CHECK(s.lr_at(2) == Approx(0.01).epsilon(1e-12));  // it = 0: 0.1 * (0.1 + 0.9 * 0)
  // it = 1: 0.1 * (0.1 + 0.9 * ln(2)/ln(5)) = 0.04876089022660538
  CHECK(s.lr_at(3) == Approx(0.04876089022660538).epsilon(1e-12));
  // it = 5: p = min(1, (5 - 5 + 1) / max(1, 20 - 5)) = 1/15;
  // 0.1 * (0.0001 + 0.9999 * (1 + cos(pi/15)) / 2) = 0.09890748929868662
  CHECK(s.lr_at(7) == Approx(0.09890748929868662).epsilon(1e-12));
  // it = 19: p = 15/15 = 1: 0.1 * 0.0001
  CHECK(s.lr_at(21) == Approx(1e-5).epsilon(1e-9));
  CHECK(s.lr_at(40) == Approx(1e-5).epsilon(1e-9));  // clamped past the end
}

TEST_CASE("OneCycle lr and momentum", "[lr]") {
  ds::config::OneCycleParams p;
  p.cycle_min_lr = 0.001;
  p.cycle_max_lr = 0.01;
  p.cycle_first_step_size = 4;
  p.cycle_second_step_size = 6;  // total 10, ratio 0.4
  p.cycle_min_mom = 0.85;
  p.cycle_max_mom = 0.95;
  p.decay_lr_rate = 0.5;
  p.decay_step_size = 2;
  p.decay_mom_rate = 0.1;
  LrSchedule s(p, 0.5);
  REQUIRE(s.cycles_momentum());
  CHECK(*s.beta2_override() == 0.99);
  // step 1, it = -1: the constructor's min_lr and min_mom
  CHECK(s.lr_at(1) == 0.001);
  CHECK(*s.beta1_at(1) == 0.85);
  // it = 0: b = 1, x = 0.1 <= 0.4, scale = 0.1/0.4 = 0.25
  CHECK(s.lr_at(2) == Approx(0.001 + 0.009 * 0.25).epsilon(1e-12));
  CHECK(*s.beta1_at(2) == Approx(0.95 - 0.1 * 0.25).epsilon(1e-12));
  // it = 3: b = 4, x = 0.4, scale = 1 (the peak)
  CHECK(s.lr_at(5) == Approx(0.01).epsilon(1e-12));
  CHECK(*s.beta1_at(5) == Approx(0.85).epsilon(1e-12));
  // it = 5: b = 6, x = 0.6, scale = (0.6 - 1)/(0.4 - 1) = 2/3
  CHECK(s.lr_at(7) == Approx(0.007).epsilon(1e-12));
  CHECK(*s.beta1_at(7) == Approx(0.95 - 0.1 * 2.0 / 3).epsilon(1e-12));
  // it = 9: b = 10, x = 0: scale 0
  CHECK(s.lr_at(11) == Approx(0.001).epsilon(1e-12));
  CHECK(*s.beta1_at(11) == Approx(0.95).epsilon(1e-12));
  // it = 10: decay, d = it - 10 + 1 = 1: lr = 0.001/(1 + 0.5*1/2), beta1 = 0.95*(1 + 0.1*1/2)
  CHECK(s.lr_at(12) == Approx(0.0008).epsilon(1e-12));
  CHECK(*s.beta1_at(12) == Approx(0.9975).epsilon(1e-12));
  // it = 13: d = 4: lr = 0.001/(1 + 0.5*2)
  CHECK(s.lr_at(15) == Approx(0.0005).epsilon(1e-12));

  p.decay_step_size = 0;  // no decay: min_lr and max_mom after the cycle
  LrSchedule no_decay(p, 0.5);
  CHECK(no_decay.lr_at(15) == 0.001);
  CHECK(*no_decay.beta1_at(15) == 0.95);

  LrSchedule sgd(p, 0.5, /*optimizer_has_betas=*/false);
  CHECK_FALSE(sgd.cycles_momentum());
  CHECK_FALSE(sgd.beta1_at(3).has_value());
  CHECK_FALSE(sgd.beta2_override().has_value());
}

TEST_CASE("OneCycle staircase", "[lr]") {
  ds::config::OneCycleParams p;
  p.cycle_min_lr = 0.001;
  p.cycle_max_lr = 0.01;
  p.cycle_first_step_size = 4;
  p.cycle_second_step_size = 4;
  p.cycle_first_stair_count = 2;
  p.cycle_second_stair_count = 2;
  LrSchedule s(p, 0.5);
  // first half: scale = floor(ci * 2 / 4) / 2 with ci = (it + 1) mod 8
  CHECK(s.lr_at(2) == 0.001);                          // it = 0: floor(0.5) = 0
  CHECK(s.lr_at(3) == Approx(0.0055).epsilon(1e-12));  // it = 1: floor(1) / 2 = 0.5
  CHECK(s.lr_at(5) == Approx(0.01).epsilon(1e-12));    // it = 3: floor(2) / 2 = 1
  // second half: scale = floor((8 - ci) * 2 / 4) / 2
  CHECK(s.lr_at(6) == Approx(0.0055).epsilon(1e-12));  // it = 4: floor(1.5) / 2
  CHECK(s.lr_at(8) == Approx(0.001).epsilon(1e-12));   // it = 6: floor(0.5) / 2
}

TEST_CASE("LRRangeTest", "[lr]") {
  ds::config::LRRangeTestParams p;
  p.lr_range_test_min_lr = 0.001;
  p.lr_range_test_step_size = 4;
  p.lr_range_test_step_rate = 0.5;
  LrSchedule s(p, 0.5);
  CHECK(s.lr_at(1) == 0.001);                            // it = -1: min_lr
  CHECK(s.lr_at(2) == Approx(0.001125).epsilon(1e-12));  // it = 0: 1 + 0.5 * 1/4
  CHECK(s.lr_at(9) == Approx(0.002).epsilon(1e-12));     // it = 7: 1 + 0.5 * 8/4
  p.lr_range_test_staircase = true;
  LrSchedule stairs(p, 0.5);
  CHECK(stairs.lr_at(4) == 0.001);                          // it = 2: floor(3/4) = 0
  CHECK(stairs.lr_at(5) == Approx(0.0015).epsilon(1e-12));  // it = 3: floor(4/4) = 1
}
