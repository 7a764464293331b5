#include "tensor/op_times.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace ds::tensor {

void OpTimes::add(std::string_view op, double ms) {
  auto it = totals_.find(op);
  if (it == totals_.end()) {
    it = totals_.emplace(std::string(op), Total{.warmup_left = warmup_calls_}).first;
  }
  if (it->second.warmup_left > 0) {
    --it->second.warmup_left;
    return;
  }
  it->second.calls += 1;
  it->second.ms += ms;
  total_ms_ += ms;
}

std::string OpTimes::report(std::string_view heading, size_t max_rows,
                            std::string_view what) const {
  std::vector<std::pair<std::string_view, Total>> rows;
  for (const auto& [op, total] : totals_) {
    if (total.calls > 0) rows.emplace_back(op, total);
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  const size_t all_rows = rows.size();
  if (rows.size() > max_rows) rows.resize(max_rows);
  size_t width = 0;
  for (const auto& [op, total] : rows) width = std::max(width, op.size());
  std::string out = fmt::format("{}: {:.1f} ms in {} {}", heading, total_ms_, all_rows, what);
  if (warmup_calls_ > 0) {
    out += warmup_calls_ == 1 ? std::string(" (each op's first call left out)")
                              : fmt::format(" (each op's first {} calls left out)", warmup_calls_);
  }
  for (const auto& [op, total] : rows) {
    const double share = total_ms_ > 0 ? 100.0 * total.ms / total_ms_ : 0.0;
    out += fmt::format("\n  {:<{}}  {:>7} calls  {:>10.3f} ms  {:>5.1f} %", op, width, total.calls,
                       total.ms, share);
  }
  if (rows.size() < all_rows) out += fmt::format("\n  ({} more)", all_rows - rows.size());
  return out;
}

}  // namespace ds::tensor
