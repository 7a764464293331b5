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
  // The numbers that tell the caller's sizes apart (unused ones 0), and their names for the log:
  // "B=16 T<=1024" from {16, 1024} and {"B=", " T<="}.
  using Size = std::array<int, 5>;
  using SizeNames = std::array<const char*, 5>;

  // `kernel` and what variants 0 and 1 are, for report().
  VariantChoice(std::string kernel, std::array<std::string, 2> variants, SizeNames size_names);

  // The variant for `size`: the faster by time_both(), which runs only the first time the size
  // comes (a tie keeps variant 0). A lookup of five numbers after that.
  int pick(const Size& size, const std::function<Times()>& time_both);

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
  SizeNames size_names_;
  std::map<Size, Choice> choices_;
};

}  // namespace ds::tensor
