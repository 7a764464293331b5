// DynamicLossScaler replays, each scale worked out by hand from the update rule in
// lib/optim/loss_scaler.h (DeepSpeed's loss_scaler.py).
#include <catch2/catch.hpp>
#include <vector>

#include "optim/loss_scaler.h"
#include "util/error.h"

using ds::optim::LossScaler;

namespace {

// Feeds the overflow pattern (1 = overflow) and returns the scale after each update.
std::vector<double> replay(LossScaler& s, const std::vector<int>& overflows) {
  std::vector<double> scales;
  for (int o : overflows) {
    s.update(o != 0);
    scales.push_back(s.scale());
  }
  return scales;
}

LossScaler::DynamicOptions options(bool consecutive) {
  LossScaler::DynamicOptions o;
  o.init_scale = 16;
  o.window = 3;
  o.min_scale = 1;
  o.hysteresis = 2;
  o.consecutive_hysteresis = consecutive;
  return o;
}

}  // namespace

TEST_CASE("dynamic loss scaler with hysteresis", "[loss_scaler]") {
  LossScaler s = LossScaler::dynamic(options(false));
  CHECK(s.scale() == 16);
  // iter: 0..3 good: stable = iter - (-1) - 1 = iter; iter 3: stable 3 % 3 == 0 -> 32
  // iter 4 overflow: hysteresis 2 -> 1, scale kept; iter 5, 6 overflow: halve (16, 8)
  // iter 7..10 good: stable = iter - 6 - 1; iter 10: stable 3 -> 16, hysteresis refilled
  // iter 11 overflow: hysteresis 2 -> 1 (kept 16); iter 12 good (stable 0, no refill)
  // iter 13 overflow: hysteresis 1 -> halve to 8
  const std::vector<int> overflow = {0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1};
  const std::vector<double> expected = {16, 16, 16, 32, 32, 16, 8, 8, 8, 8, 16, 16, 16, 8};
  CHECK(replay(s, overflow) == expected);
  CHECK(s.state().cur_iter == 14);
  CHECK(s.state().last_overflow_iter == 13);
  CHECK(s.state().cur_hysteresis == 1);
}

TEST_CASE("consecutive_hysteresis refills on every good step", "[loss_scaler]") {
  LossScaler s = LossScaler::dynamic(options(true));
  // as above up to iter 11; iter 12 good refills hysteresis to 2, so iter 13's overflow
  // only takes it to 1 and keeps 16
  const std::vector<int> overflow = {0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1};
  const std::vector<double> expected = {16, 16, 16, 32, 32, 16, 8, 8, 8, 8, 16, 16, 16, 16};
  CHECK(replay(s, overflow) == expected);
}

TEST_CASE("overflow at the minimum scale ends the run", "[loss_scaler]") {
  LossScaler::DynamicOptions o;
  o.init_scale = 4;
  o.window = 1000;
  o.min_scale = 1;
  o.hysteresis = 1;
  LossScaler s = LossScaler::dynamic(o);
  s.update(true);  // 2
  s.update(true);  // 1 = min
  CHECK(s.scale() == 1);
  try {
    s.update(true);
    FAIL("expected an error at the minimum scale");
  } catch (const ds::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("Current loss scale already at minimum"));
  }
}

TEST_CASE("min_scale bounds the halving", "[loss_scaler]") {
  LossScaler::DynamicOptions o;
  o.init_scale = 3;
  o.window = 1000;
  o.min_scale = 2;
  o.hysteresis = 1;
  LossScaler s = LossScaler::dynamic(o);
  s.update(true);  // max(1.5, 2) = 2
  CHECK(s.scale() == 2);
  CHECK_THROWS_AS(s.update(true), ds::Error);
}

TEST_CASE("FP16_Optimizer variant ignores hysteresis and never raises", "[loss_scaler]") {
  LossScaler s = LossScaler::dynamic(options(false), LossScaler::Kind::kFp16Optimizer);
  // every overflow halves; iter 6..9 good -> iter 9: stable = 9 - 5 - 1 = 3 -> x2
  const std::vector<int> overflow = {1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
  const std::vector<double> expected = {8, 4, 2, 1, 1, 1, 1, 1, 1, 2};
  CHECK(replay(s, overflow) == expected);
}

TEST_CASE("loss scaler from the fp16 config", "[loss_scaler]") {
  ds::config::Fp16Config fp16;
  CHECK(LossScaler::from_config(fp16).kind() == LossScaler::Kind::kNone);
  CHECK(LossScaler::from_config(fp16).scale() == 1);

  fp16.enabled = true;
  LossScaler dynamic = LossScaler::from_config(fp16);
  CHECK(dynamic.is_dynamic());
  CHECK(dynamic.scale() == 65536);  // 2^16
  CHECK(dynamic.state().cur_hysteresis == 2);

  fp16.loss_scale = 128;
  LossScaler fixed = LossScaler::from_config(fp16);
  CHECK(fixed.kind() == LossScaler::Kind::kStatic);
  fixed.update(true);
  fixed.update(false);
  CHECK(fixed.scale() == 128);
}

TEST_CASE("loss scaler state round-trips", "[loss_scaler]") {
  LossScaler a = LossScaler::dynamic(options(false));
  for (int o : {0, 0, 0, 1}) a.update(o != 0);
  LossScaler b = LossScaler::dynamic(options(false));
  b.load_state(a.state());
  for (int o : {1, 0, 0, 0, 0, 1}) {
    a.update(o != 0);
    b.update(o != 0);
    CHECK(a.scale() == b.scale());
  }
}
