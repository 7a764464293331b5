// The sampler's documented semantics (lib/data/sampler.h), checked on a stream whose
// token at position j is j, so every token read shows where it came from.
#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>
#include <set>
#include <vector>

#include "data/sampler.h"
#include "util/error.h"

using ds::data::EvalSampler;
using ds::data::SamplerOptions;
using ds::data::TrainSampler;

namespace {

std::vector<int32_t> positions(int32_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

SamplerOptions options(bool shuffle) {
  SamplerOptions o;
  o.seq_len = 8;
  o.micro_batch = 2;
  o.grad_accum_steps = 2;
  o.dp_size = 2;  // train_batch_size 8
  o.shuffle = shuffle;
  o.seed = 1234;
  return o;
}

}  // namespace

TEST_CASE("splitmix64 is the reference generator", "[sampler]") {
  // splitmix64 seeded with 0: the well-known first output
  ds::data::SplitMix64 rng(0);
  CHECK(rng.next() == 0xE220A8397B1DCDAFULL);
}

TEST_CASE("epoch permutations follow the documented Fisher-Yates", "[sampler]") {
  // Printed by a 10-line Python transcription of the algorithm in sampler.h.
  CHECK(ds::data::epoch_permutation(1234, 0, 6) == std::vector<int64_t>{4, 5, 2, 3, 1, 0});
  CHECK(ds::data::epoch_permutation(1234, 1, 6) == std::vector<int64_t>{1, 4, 5, 0, 3, 2});
  CHECK(ds::data::epoch_permutation(7, 0, 10) ==
        std::vector<int64_t>{8, 0, 4, 2, 7, 6, 1, 3, 9, 5});
  CHECK(ds::data::epoch_permutation(7, 0, 1) == std::vector<int64_t>{0});
}

TEST_CASE("unshuffled micro-batches read consecutive windows", "[sampler]") {
  const auto tokens = positions(50);  // L = 50, T = 8
  TrainSampler s(tokens, options(false));
  CHECK(s.train_batch_size() == 8);
  // step 0, micro-step 1, rank 1: first sample 0*8 + (1*2 + 1)*2 = 6, window 48
  CHECK(s.first_sample(0, 1, 1) == 6);
  std::vector<int32_t> in(16), tgt(16);
  s.fill_micro_batch(0, 1, 1, in.data(), tgt.data());
  // row 0: window 48 wraps: 48 49 0 1 2 3 4 5, targets shifted by one
  CHECK(std::vector<int32_t>(in.begin(), in.begin() + 8) ==
        std::vector<int32_t>{48, 49, 0, 1, 2, 3, 4, 5});
  CHECK(std::vector<int32_t>(tgt.begin(), tgt.begin() + 8) ==
        std::vector<int32_t>{49, 0, 1, 2, 3, 4, 5, 6});
  // row 1: sample 7, window 56 mod 50 = 6
  CHECK(in[8] == 6);
  CHECK(tgt[15] == 14);
  // step 1, micro-step 0, rank 0: sample 8, window 64 mod 50 = 14
  CHECK(s.first_sample(1, 0, 0) == 8);
  CHECK(s.window_start(8) == 14);
  // huge step numbers do not overflow
  CHECK(s.window_start(int64_t{1} << 60) == static_cast<int64_t>(((1ULL << 60) % 50) * 8 % 50));
}

TEST_CASE("the ranks and micro-steps of a step partition its samples", "[sampler]") {
  const auto tokens = positions(50);
  TrainSampler s(tokens, options(false));
  std::set<int64_t> seen;
  for (int m = 0; m < 2; ++m) {
    for (int r = 0; r < 2; ++r) {
      const int64_t first = s.first_sample(3, m, r);
      seen.insert(first);
      seen.insert(first + 1);
    }
  }
  CHECK(seen == std::set<int64_t>{24, 25, 26, 27, 28, 29, 30, 31});
  CHECK_THROWS_AS(s.first_sample(0, 2, 0), ds::Error);
  CHECK_THROWS_AS(s.first_sample(0, 0, 2), ds::Error);
}

TEST_CASE("shuffled samples visit every window once per epoch", "[sampler]") {
  const auto tokens = positions(50);  // S = floor(50 / 8) = 6 samples per epoch
  TrainSampler s(tokens, options(true));
  CHECK(s.samples_per_epoch() == 6);
  // epoch 0 = perm(1234, 0, 6) = {4, 5, 2, 3, 1, 0}, windows perm * 8
  const std::vector<int64_t> epoch0 = {32, 40, 16, 24, 8, 0};
  // epoch 1 = perm(1234, 1, 6) = {1, 4, 5, 0, 3, 2}
  const std::vector<int64_t> epoch1 = {8, 32, 40, 0, 24, 16};
  for (int64_t i = 0; i < 6; ++i) {
    CHECK(s.window_start(i) == epoch0[static_cast<size_t>(i)]);
    CHECK(s.window_start(6 + i) == epoch1[static_cast<size_t>(i)]);
  }
  // back to epoch 0 after the cache moved on: same answer
  CHECK(s.window_start(1) == 40);
  std::vector<int32_t> in(8), tgt(8);
  s.fill_sample(1, in.data(), tgt.data());
  // window 40: 40..47, the last target is 48
  CHECK(in.front() == 40);
  CHECK(tgt.back() == 48);

  TrainSampler other_seed(tokens, [] {
    auto o = options(true);
    o.seed = 7;
    return o;
  }());
  std::vector<int64_t> a, b;
  for (int64_t i = 0; i < 6; ++i) {
    a.push_back(s.window_start(i));
    b.push_back(other_seed.window_start(i));
  }
  CHECK(a != b);
}

TEST_CASE("a stream shorter than two windows still has one sample per epoch", "[sampler]") {
  const auto tokens = positions(10);  // T = 8: S = max(1, 10 / 8) = 1
  TrainSampler s(tokens, options(true));
  CHECK(s.samples_per_epoch() == 1);
  CHECK(s.window_start(5) == 0);
  const auto too_short = positions(8);
  CHECK_THROWS_AS(TrainSampler(too_short, options(false)), ds::Error);
}

TEST_CASE("eval batches read consecutive windows of the val stream", "[sampler]") {
  const auto val = positions(20);  // Lv = 20, T = 4, MB = 3
  EvalSampler e(val, 4, 3);
  // batch 1: windows (1*3 + k) * 4 mod 20 = 12, 16, 0
  CHECK(e.window_start(1, 0) == 12);
  CHECK(e.window_start(1, 1) == 16);
  CHECK(e.window_start(1, 2) == 0);
  std::vector<int32_t> in(12), tgt(12);
  e.fill_batch(1, in.data(), tgt.data());
  CHECK(std::vector<int32_t>(in.begin() + 4, in.begin() + 8) ==
        std::vector<int32_t>{16, 17, 18, 19});
  CHECK(std::vector<int32_t>(tgt.begin() + 4, tgt.begin() + 8) ==
        std::vector<int32_t>{17, 18, 19, 0});
}
