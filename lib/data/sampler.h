// Which tokens each micro-batch reads: a pure function of (step, micro-step, rank), so
// any batch can be replayed by an independent script and a resumed run needs only the
// step number.
//
// Definitions. The train stream holds L tokens; T = seq_len; MB = micro batch per rank;
// GAS = gradient accumulation steps; DP = data-parallel size; TB = MB * GAS * DP
// (train_batch_size). Token position j >= 0 reads stream[j mod L] (windows wrap around).
//
// Sample i (i = 0, 1, ...) is the window of T + 1 tokens starting at w(i):
//   inputs[t]  = stream[(w(i) + t) mod L]       for t in [0, T)
//   targets[t] = stream[(w(i) + t + 1) mod L]   for t in [0, T)
//
// Optimizer step s (from 0), micro-step m in [0, GAS), data-parallel rank r in [0, DP)
// reads the MB samples i = s*TB + (m*DP + r)*MB + k, k in [0, MB), as rows k of a
// row-major [MB, T] inputs/targets pair.
//
// shuffle off: w(i) = (i * T) mod L — consecutive windows, wrapping around the stream.
// shuffle on:  S = max(1, floor(L / T)) samples per epoch; epoch e = i / S, position
//              p = i mod S, w(i) = perm_e[p] * T, where perm_e is this permutation of
//              [0, S), all arithmetic on unsigned 64-bit integers modulo 2^64:
//     state = seed XOR ((e + 1) * 0xD1B54A32D192ED03)
//     next(): state += 0x9E3779B97F4A7C15; z = state;
//             z = (z XOR (z >> 30)) * 0xBF58476D1CE4E5B9;
//             z = (z XOR (z >> 27)) * 0x94D049BB133111EB;
//             return z XOR (z >> 31)                         (splitmix64)
//     perm = [0, 1, ..., S-1]
//     for k = S-1 down to 1: j = next() mod (k + 1); swap(perm[k], perm[j])
//
// Evaluation reads the validation stream (Lv tokens) without shuffling: eval batch b
// holds the MB windows starting at ((b*MB + k) * T) mod Lv, k in [0, MB). To spread eval
// over ranks, give rank r of DP the batches b = n*DP + r.
//
// Loss masks. A stream may carry one flag per token, M[j] in {0, 1} (instruction data
// with mask_prompt). A flagged position is never a target: wherever the rules above read
// targets[t] = stream[j], it is kIgnoreTarget (-100) instead when M[j] = 1. Inputs are
// never changed. A stream without flags has M[j] = 0 everywhere.
//
// Unpacked samples (data.packing: false). The data are N samples, each a span of the
// stream: start_n and length len_n, 2 <= len_n <= T + 1 (token_dataset.h says how spans
// are cut from documents). Sample i reads span n = c(i):
//   inputs[t]  = stream[start_n + t]                     for t < len_n - 1, else P
//   targets[t] = stream[start_n + t + 1] (or -100 if M)  for t < len_n - 1, else -100
// where P is the pad token (the tokenizer's EOS). c(i) replaces w(i):
//   shuffle off: c(i) = i mod N;
//   shuffle on:  S = N samples per epoch, c(i) = perm_e[i mod S] with e = i / S and
//                perm_e the permutation above.
// Evaluation on unpacked data: row k of eval batch b reads span (b*MB + k) mod Nv.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ds::data {

// PyTorch's ignore_index: a target that takes no part in the loss. The same value as
// tensor::cpu::kIgnoreTarget; lib/data must not depend on lib/tensor, so the trainer
// static_asserts that the two agree.
inline constexpr int32_t kIgnoreTarget = -100;

// One unpacked sample: tokens [start, start + length) of the stream.
struct SampleSpan {
  int64_t start = 0;
  int64_t length = 0;  // 2 .. T + 1
};

// What a sampler reads; every span must outlive the sampler.
struct SampleSource {
  std::span<const int32_t> tokens;      // the stream, L tokens
  std::span<const uint8_t> ignored;     // empty, or L flags M[j]: 1 = never a target
  std::span<const SampleSpan> samples;  // empty: packed windows; else the N unpacked samples
  int32_t pad_id = 0;                   // P: inputs past an unpacked sample's end
};

struct SamplerOptions {
  int64_t seq_len = 0;           // T
  int64_t micro_batch = 1;       // MB, train_micro_batch_size_per_gpu
  int64_t grad_accum_steps = 1;  // GAS
  int64_t dp_size = 1;           // DP
  bool shuffle = false;
  uint64_t seed = 0;
};

// splitmix64, the generator behind the shuffle (exposed for tests and replay tools).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t state) : state_(state) {}
  uint64_t next();

 private:
  uint64_t state_;
};

// The shuffle permutation of epoch `epoch`, as defined above.
std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t samples);

class TrainSampler {
 public:
  // `tokens` must outlive the sampler and hold at least seq_len + 1 tokens.
  TrainSampler(std::span<const int32_t> tokens, SamplerOptions options);
  // Packed: at least seq_len + 1 tokens; unpacked: at least one sample.
  TrainSampler(SampleSource source, SamplerOptions options);

  int64_t train_batch_size() const;                                 // TB
  int64_t samples_per_epoch() const { return samples_per_epoch_; }  // S (shuffle on)
  // i = s*TB + (m*DP + r)*MB: the first sample of that micro-batch.
  int64_t first_sample(int64_t step, int micro_step, int dp_rank) const;
  // w(i): where sample i's window starts in the stream (unpacked: start of span c(i)).
  int64_t window_start(int64_t sample);
  // c(i): the span sample i reads; unpacked data only.
  int64_t span_index(int64_t sample);

  void fill_sample(int64_t sample, int32_t* inputs, int32_t* targets);
  // inputs and targets: MB * T each, row-major.
  void fill_micro_batch(int64_t step, int micro_step, int dp_rank, int32_t* inputs,
                        int32_t* targets);

 private:
  int64_t shuffled(int64_t sample);  // perm_e[i mod S]

  SampleSource source_;
  SamplerOptions options_;
  int64_t samples_per_epoch_;
  int64_t cached_epoch_ = -1;  // the epoch whose permutation perm_ holds
  std::vector<int64_t> perm_;
};

class EvalSampler {
 public:
  // `tokens` (the validation stream) must outlive the sampler, holding >= seq_len + 1.
  EvalSampler(std::span<const int32_t> tokens, int64_t seq_len, int64_t micro_batch);
  EvalSampler(SampleSource source, int64_t seq_len, int64_t micro_batch);

  int64_t window_start(int64_t batch, int64_t row) const;
  // inputs and targets: MB * T each, row-major.
  void fill_batch(int64_t batch, int32_t* inputs, int32_t* targets) const;

 private:
  SampleSource source_;
  int64_t seq_len_;
  int64_t micro_batch_;
};

}  // namespace ds::data
