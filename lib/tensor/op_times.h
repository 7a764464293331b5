// GPU time per op, summed over its calls, and the table that reports it: the host side of the CUDA
// ops' profiler (tensor/cuda/op_profiler.h), which builds without the toolkit.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace ds::tensor {

class OpTimes {
 public:
  void add(std::string_view op, double ms);
  double total_ms() const { return total_ms_; }
  // A heading, then one line per op, the most time first (ties by name):
  //   "  <op>  <calls> calls  <ms> ms  <share> %".
  std::string report(std::string_view heading) const;

 private:
  struct Total {
    int64_t calls = 0;
    double ms = 0;
  };
  std::map<std::string, Total, std::less<>> totals_;
  double total_ms_ = 0;
};

}  // namespace ds::tensor
