// The GPU times a VariantChoice (tensor/variant_choice.h) chooses by.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <vector>

#include "tensor/variant_choice.h"

namespace ds::tensor::cuda {

// Each of `count` variants' fastest of three runs on `stream` (milliseconds, by variant), after
// one each that loads its kernels; the runs alternate, so that a clock still rising at the start
// favours none. run(v) queues variant v; it must be safe to repeat (its results written, not
// accumulated).
std::vector<float> time_each(int count, const std::function<void(int)>& run, cudaStream_t stream);
// time_each for a VariantChoice's two variants.
VariantChoice::Times time_variants(const std::function<void(int)>& run, cudaStream_t stream);

}  // namespace ds::tensor::cuda
