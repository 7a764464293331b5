// The GPU times a VariantChoice (tensor/variant_choice.h) chooses by.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>

#include "tensor/variant_choice.h"

namespace ds::tensor::cuda {

// Each variant's fastest of three runs on `stream`, after one each that loads its kernels; the
// runs alternate, so that a clock still rising at the start favours neither. run(v) queues
// variant v; it must be safe to repeat (its results written, not accumulated).
VariantChoice::Times time_variants(const std::function<void(int)>& run, cudaStream_t stream);

}  // namespace ds::tensor::cuda
