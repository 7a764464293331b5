#include "data/sampler.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "util/error.h"

namespace ds::data {
namespace {

__extension__ typedef unsigned __int128 Uint128;

// (a * b) mod m without overflow for any non-negative a, b and positive m.
int64_t mul_mod(int64_t a, int64_t b, int64_t m) {
  return static_cast<int64_t>((static_cast<Uint128>(a) * static_cast<uint64_t>(b)) %
                              static_cast<uint64_t>(m));
}

// Copies the window of T + 1 tokens starting at `start`, wrapping at the end of the stream.
void fill_window(const SampleSource& src, int64_t start, int64_t seq_len, int32_t* inputs,
                 int32_t* targets) {
  const int64_t n = static_cast<int64_t>(src.tokens.size());
  const bool masked = !src.ignored.empty();
  int64_t j = start;
  for (int64_t t = 0; t < seq_len; ++t) {
    inputs[t] = src.tokens[static_cast<size_t>(j)];
    j = j + 1 == n ? 0 : j + 1;
    targets[t] = masked && src.ignored[static_cast<size_t>(j)] != 0
                     ? kIgnoreTarget
                     : src.tokens[static_cast<size_t>(j)];
  }
}

// One unpacked sample: its span, then padding whose targets are ignored.
void fill_span(const SampleSource& src, const SampleSpan& span, int64_t seq_len, int32_t* inputs,
               int32_t* targets) {
  const bool masked = !src.ignored.empty();
  const int64_t used = span.length - 1;
  for (int64_t t = 0; t < seq_len; ++t) {
    if (t >= used) {
      inputs[t] = src.pad_id;
      targets[t] = kIgnoreTarget;
      continue;
    }
    const auto j = static_cast<size_t>(span.start + t);
    inputs[t] = src.tokens[j];
    targets[t] = masked && src.ignored[j + 1] != 0 ? kIgnoreTarget : src.tokens[j + 1];
  }
}

void check_source(const SampleSource& src, int64_t seq_len, const char* what) {
  const auto n = static_cast<int64_t>(src.tokens.size());
  DS_CHECK(src.ignored.empty() || static_cast<int64_t>(src.ignored.size()) == n,
           "the {} stream has {} tokens but {} mask flags", what, n, src.ignored.size());
  if (src.samples.empty()) {
    DS_CHECK(n >= seq_len + 1, "the {} stream holds {} tokens, fewer than seq_len + 1", what, n);
    return;
  }
  for (const SampleSpan& s : src.samples) {
    DS_CHECK(s.length >= 2 && s.length <= seq_len + 1 && s.start >= 0 && s.start + s.length <= n,
             "{} sample span [{}, +{}) does not fit the stream ({} tokens, seq_len {})", what,
             s.start, s.length, n, seq_len);
  }
}

}  // namespace

uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t samples) {
  std::vector<int64_t> perm(static_cast<size_t>(samples));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  SplitMix64 rng(seed ^ ((static_cast<uint64_t>(epoch) + 1) * 0xD1B54A32D192ED03ULL));
  for (int64_t k = samples - 1; k >= 1; --k) {
    const auto j = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(k + 1));
    std::swap(perm[static_cast<size_t>(k)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

TrainSampler::TrainSampler(std::span<const int32_t> tokens, SamplerOptions options)
    : TrainSampler(SampleSource{tokens, {}, {}, 0}, options) {}

TrainSampler::TrainSampler(SampleSource source, SamplerOptions options)
    : source_(source), options_(options) {
  DS_CHECK(options_.seq_len > 0 && options_.micro_batch > 0 && options_.grad_accum_steps > 0 &&
               options_.dp_size > 0,
           "sampler needs positive seq_len, micro_batch, grad_accum_steps and dp_size");
  check_source(source_, options_.seq_len, "train");
  samples_per_epoch_ =
      source_.samples.empty()
          ? std::max<int64_t>(1, static_cast<int64_t>(source_.tokens.size()) / options_.seq_len)
          : static_cast<int64_t>(source_.samples.size());
}

int64_t TrainSampler::train_batch_size() const {
  return options_.micro_batch * options_.grad_accum_steps * options_.dp_size;
}

int64_t TrainSampler::first_sample(int64_t step, int micro_step, int dp_rank) const {
  DS_CHECK(step >= 0 && micro_step >= 0 && micro_step < options_.grad_accum_steps && dp_rank >= 0 &&
               dp_rank < options_.dp_size,
           "micro-batch (step {}, micro-step {}, rank {}) is outside GAS {} x DP {}", step,
           micro_step, dp_rank, options_.grad_accum_steps, options_.dp_size);
  return step * train_batch_size() +
         (static_cast<int64_t>(micro_step) * options_.dp_size + dp_rank) * options_.micro_batch;
}

int64_t TrainSampler::shuffled(int64_t sample) {
  const int64_t epoch = sample / samples_per_epoch_;
  const int64_t position = sample % samples_per_epoch_;
  if (epoch != cached_epoch_) {
    perm_ = epoch_permutation(options_.seed, epoch, samples_per_epoch_);
    cached_epoch_ = epoch;
  }
  return perm_[static_cast<size_t>(position)];
}

int64_t TrainSampler::span_index(int64_t sample) {
  DS_CHECK(!source_.samples.empty(), "span_index is for unpacked data");
  return options_.shuffle ? shuffled(sample) : sample % samples_per_epoch_;
}

int64_t TrainSampler::window_start(int64_t sample) {
  if (!source_.samples.empty()) {
    return source_.samples[static_cast<size_t>(span_index(sample))].start;
  }
  const auto n = static_cast<int64_t>(source_.tokens.size());
  if (!options_.shuffle) return mul_mod(sample, options_.seq_len, n);
  return shuffled(sample) * options_.seq_len;
}

void TrainSampler::fill_sample(int64_t sample, int32_t* inputs, int32_t* targets) {
  if (!source_.samples.empty()) {
    fill_span(source_, source_.samples[static_cast<size_t>(span_index(sample))], options_.seq_len,
              inputs, targets);
    return;
  }
  fill_window(source_, window_start(sample), options_.seq_len, inputs, targets);
}

void TrainSampler::fill_micro_batch(int64_t step, int micro_step, int dp_rank, int32_t* inputs,
                                    int32_t* targets) {
  const int64_t first = first_sample(step, micro_step, dp_rank);
  const int64_t t = options_.seq_len;
  for (int64_t k = 0; k < options_.micro_batch; ++k) {
    fill_sample(first + k, inputs + k * t, targets + k * t);
  }
}

EvalSampler::EvalSampler(std::span<const int32_t> tokens, int64_t seq_len, int64_t micro_batch)
    : EvalSampler(SampleSource{tokens, {}, {}, 0}, seq_len, micro_batch) {}

EvalSampler::EvalSampler(SampleSource source, int64_t seq_len, int64_t micro_batch)
    : source_(source), seq_len_(seq_len), micro_batch_(micro_batch) {
  DS_CHECK(seq_len_ > 0 && micro_batch_ > 0, "eval sampler needs positive seq_len and batch");
  check_source(source_, seq_len_, "validation");
}

int64_t EvalSampler::window_start(int64_t batch, int64_t row) const {
  DS_CHECK(batch >= 0 && row >= 0 && row < micro_batch_, "eval batch {} row {} out of range", batch,
           row);
  if (!source_.samples.empty()) {
    const auto n = static_cast<int64_t>(source_.samples.size());
    return source_.samples[static_cast<size_t>((batch * micro_batch_ + row) % n)].start;
  }
  return mul_mod(batch * micro_batch_ + row, seq_len_, static_cast<int64_t>(source_.tokens.size()));
}

void EvalSampler::fill_batch(int64_t batch, int32_t* inputs, int32_t* targets) const {
  for (int64_t k = 0; k < micro_batch_; ++k) {
    if (!source_.samples.empty()) {
      const auto n = static_cast<int64_t>(source_.samples.size());
      fill_span(source_, source_.samples[static_cast<size_t>((batch * micro_batch_ + k) % n)],
                seq_len_, inputs + k * seq_len_, targets + k * seq_len_);
    } else {
      fill_window(source_, window_start(batch, k), seq_len_, inputs + k * seq_len_,
                  targets + k * seq_len_);
    }
  }
}

}  // namespace ds::data
