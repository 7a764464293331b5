#include "tensor/variant_choice.h"

#include <fmt/format.h>

#include <utility>

namespace ds::tensor {

VariantChoice::VariantChoice(std::string kernel, std::array<std::string, 2> variants)
    : kernel_(std::move(kernel)), variants_(std::move(variants)) {}

int VariantChoice::pick(const std::string& size, const std::function<Times()>& time_both) {
  const auto [known, fresh] = choices_.try_emplace(size);
  Choice& choice = known->second;
  if (fresh) {
    choice.ms = time_both();
    choice.variant = choice.ms[1] < choice.ms[0] ? 1 : 0;
  }
  return choice.variant;
}

std::string VariantChoice::report() const {
  std::string report;
  for (const auto& [size, choice] : choices_) {
    report += fmt::format("{}{} at {}: {} ({} {:.3f} ms, {} {:.3f} ms)", report.empty() ? "" : "; ",
                          kernel_, size, variants_[choice.variant], variants_[0], choice.ms[0],
                          variants_[1], choice.ms[1]);
  }
  return report;
}

}  // namespace ds::tensor
