// GPU time per op, summed over its calls, and the table that reports it: the host side of the CUDA
// ops' profiler (tensor/cuda/op_profiler.h), which builds without the toolkit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace ds::tensor {

class OpTimes {
 public:
  // Each op's first `warmup_calls` calls are left out of its total: a first call carries one-time
  // costs (loading its kernels' module, cuBLASLt's heuristic, allocations) that a step after the
  // first does not pay.
  explicit OpTimes(int64_t warmup_calls = 0) : warmup_calls_(warmup_calls) {}
  void add(std::string_view op, double ms);
  double total_ms() const { return total_ms_; }
  // A heading ("<heading>: <ms> ms in <n> <what>", and how many first calls were left out), then
  // one line per op that has a call counted, the most time first (ties by name), at most
  // `max_rows` of them:
  //   "  <op>  <calls> calls  <ms> ms  <share> %".
  std::string report(std::string_view heading, size_t max_rows = SIZE_MAX,
                     std::string_view what = "ops") const;

 private:
  struct Total {
    int64_t calls = 0;
    double ms = 0;
    int64_t warmup_left = 0;
  };
  int64_t warmup_calls_;
  std::map<std::string, Total, std::less<>> totals_;
  double total_ms_ = 0;
};

}  // namespace ds::tensor
