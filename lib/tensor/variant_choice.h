// Some kernels come in two variants that compute the same numbers bit for bit and differ only in
// speed, which depends on the GPU and the size (the tensor-core attention's, for one). A
// VariantChoice keeps, per size, the faster of the two as timed the first time that size comes
// (the caller times them on its own operands: cuda/variant_timing.h), and the times for the log.
// Host code only, so that its bookkeeping is tested without a GPU.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <string>

namespace ds::tensor {

class VariantChoice {
 public:
  // Milliseconds of variant 0 and variant 1.
  using Times = std::array<float, 2>;

  // `kernel` and what variants 0 and 1 are, for report().
  VariantChoice(std::string kernel, std::array<std::string, 2> variants);

  // The variant for `size` (a description that tells the caller's shapes apart, for the log
  // too): the faster by time_both(), which runs only the first time the size comes (a tie keeps
  // variant 0).
  int pick(const std::string& size, const std::function<Times()>& time_both);

  // Per size: "<kernel> at <size>: <variant> (<variant 0> x ms, <variant 1> y ms)", "; " apart;
  // "" before the first choice.
  std::string report() const;

 private:
  struct Choice {
    int variant = 0;
    Times ms{};
  };
  std::string kernel_;
  std::array<std::string, 2> variants_;
  std::map<std::string, Choice> choices_;
};

}  // namespace ds::tensor
