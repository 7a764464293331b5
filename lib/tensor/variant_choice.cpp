#include "tensor/variant_choice.h"

#include <fmt/format.h>

#include <utility>

namespace ds::tensor {

VariantChoice::VariantChoice(std::string kernel, std::array<std::string, 2> variants,
                             SizeNames size_names)
    : kernel_(std::move(kernel)), variants_(std::move(variants)), size_names_(size_names) {}

int VariantChoice::pick(const Size& size, const std::function<Times()>& time_both) {
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
    std::string described;
    for (size_t i = 0; i < size.size(); ++i) {
      if (size_names_[i] != nullptr) described += fmt::format("{}{}", size_names_[i], size[i]);
    }
    report += fmt::format("{}{} at {}: {} ({} {:.3f} ms, {} {:.3f} ms)", report.empty() ? "" : "; ",
                          kernel_, described, variants_[choice.variant], variants_[0], choice.ms[0],
                          variants_[1], choice.ms[1]);
  }
  return report;
}

}  // namespace ds::tensor
