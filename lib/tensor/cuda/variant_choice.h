// Some kernels come in two variants that compute the same numbers bit for bit and differ only in
// speed, which depends on the GPU and the size (the tensor-core attention's block shapes, for
// one). A VariantChoice times both the first time a size comes, on the caller's own operands, and
// keeps the faster for the run; the log gets the choices and their times (report()).
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <functional>
#include <map>
#include <string>

namespace ds::tensor::cuda {

class VariantChoice {
 public:
  // `kernel` and what variants 0 and 1 are, for report().
  VariantChoice(std::string kernel, std::array<std::string, 2> variants);

  // The variant for `size` (a description that tells the caller's shapes apart, for the log
  // too), timing run(0) and run(1) on `stream` the first time it comes. run(v) queues variant v
  // on `stream`; it must be safe to repeat (its results written, not accumulated), as it runs
  // several times then.
  int pick(const std::string& size, const std::function<void(int)>& run, cudaStream_t stream);

  // Per size: "<kernel> at <size>: <variant> (<variant 0> x ms, <variant 1> y ms)", "; " apart;
  // "" before the first choice.
  std::string report() const;

 private:
  struct Choice {
    int variant = 0;
    std::array<float, 2> ms{};  // the fastest of a few runs of each
  };
  std::string kernel_;
  std::array<std::string, 2> variants_;
  std::map<std::string, Choice> choices_;
};

}  // namespace ds::tensor::cuda
