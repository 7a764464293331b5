#include "config/batch_triad.h"

#include <fmt/format.h>

namespace ds::config {
namespace {

constexpr const char* kTrain = "train_batch_size";
constexpr const char* kMicro = "train_micro_batch_size_per_gpu";
constexpr const char* kAccum = "gradient_accumulation_steps";

std::string mismatch(int64_t t, int64_t m, int64_t g, int64_t w) {
  return fmt::format(
      "Check batch related parameters. train_batch_size is not equal to micro_batch_per_gpu * "
      "gradient_acc_step * world_size {} != {} * {} * {}",
      t, m, g, w);
}

TriadResult failure(std::string error, const char* key) {
  TriadResult r;
  r.error = std::move(error);
  r.offending_key = key;
  return r;
}

// train_batch_size must be a multiple of `divisor` (spelled out in `divisor_text`) for
// `inferred` to exist.
std::string not_divisible(int64_t t, const std::string& divisor_text, const char* inferred,
                          int64_t m_floor, int64_t g_floor, int64_t w) {
  return fmt::format(
      "train_batch_size {} is not divisible by {}, so {} cannot be inferred (DeepSpeed would "
      "floor it and fail with: {})",
      t, divisor_text, inferred, mismatch(t, m_floor, g_floor, w));
}

}  // namespace

TriadResult resolve_batch_triad(const TriadInput& in) {
  const int64_t w = in.dp_size;
  const auto& t_in = in.train_batch_size;
  const auto& m_in = in.micro_batch_per_gpu;
  const auto& g_in = in.gradient_accumulation_steps;
  int64_t t = 0, m = 0, g = 0;

  if (t_in && m_in && g_in) {
    t = *t_in, m = *m_in, g = *g_in;
  } else if (t_in && m_in) {
    t = *t_in, m = *m_in;
    if (t % (m * w) != 0) {
      return failure(not_divisible(t,
                                   fmt::format("train_micro_batch_size_per_gpu * world_size = "
                                               "{} * {} = {}",
                                               m, w, m * w),
                                   kAccum, m, (t / m) / w, w),
                     kTrain);
    }
    g = t / (m * w);
  } else if (t_in && g_in) {
    t = *t_in, g = *g_in;
    if (t % (g * w) != 0) {
      return failure(not_divisible(t,
                                   fmt::format("gradient_accumulation_steps * world_size = "
                                               "{} * {} = {}",
                                               g, w, g * w),
                                   kMicro, (t / w) / g, g, w),
                     kTrain);
    }
    m = t / (g * w);
  } else if (m_in && g_in) {
    m = *m_in, g = *g_in;
    t = m * g * w;
  } else if (t_in) {
    t = *t_in, g = 1;
    if (t % w != 0) {
      return failure(not_divisible(t, fmt::format("world_size = {}", w), kMicro, t / w, 1, w),
                     kTrain);
    }
    m = t / w;
  } else if (m_in) {
    m = *m_in, g = 1;
    t = m * w;
  } else {
    return failure("Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided",
                   kTrain);
  }

  if (t <= 0)
    return failure(fmt::format("Train batch size: {} has to be greater than 0", t), kTrain);
  if (m <= 0) {
    return failure(fmt::format("Micro batch size per gpu: {} has to be greater than 0", m), kMicro);
  }
  if (g <= 0) {
    return failure(fmt::format("Gradient accumulation steps: {} has to be greater than 0", g),
                   kAccum);
  }
  if (t != m * g * w) return failure(mismatch(t, m, g, w), kTrain);

  TriadResult r;
  r.train_batch_size = t;
  r.micro_batch_per_gpu = m;
  r.gradient_accumulation_steps = g;
  return r;
}

}  // namespace ds::config
