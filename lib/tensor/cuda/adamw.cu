// One fused Adam/AdamW kernel; see adamw.h. The __f*_rn intrinsics round each operation on
// its own, which keeps nvcc from contracting a*b+c into an FMA: optim::Adam's host loop
// rounds every step, and the point is to reproduce it bit for bit.
#include <cuda_runtime.h>

#include "tensor/cuda/adamw.h"
#include "tensor/cuda/kernel_helpers.cuh"
#include "tensor/cuda/storage_types.cuh"

namespace ds::tensor::cuda {
namespace {

// The gradient's element i in fp32, scaled as convert_scaled scales it (G: its storage).
template <typename G>
__device__ __forceinline__ float gradient(const G* grads, float scale, int64_t i) {
  return __fmul_rn(scale, detail::load(grads, i));
}

// The updated parameter into the 16-bit copy, where there is one (P: its storage).
template <typename P>
__device__ __forceinline__ void round_into(P* params16, int64_t i, float p) {
  if (params16 != nullptr) detail::store(params16, i, p);
}

template <typename G, typename P>
__global__ void adam_kernel(float* params, const G* grads, float scale, P* params16, float* m,
                            float* v, int64_t n, AdamCoefficients k) {
  const int64_t i = detail::element();
  if (i >= n) return;
  const float p = params[i];
  float g = gradient(grads, scale, i);
  if (!k.decoupled) g = __fadd_rn(g, __fmul_rn(k.decay, p));
  const float mi = __fadd_rn(__fmul_rn(k.beta1, m[i]), __fmul_rn(k.one_minus_beta1, g));
  const float vi =
      __fadd_rn(__fmul_rn(k.beta2, v[i]), __fmul_rn(__fmul_rn(k.one_minus_beta2, g), g));
  m[i] = mi;
  v[i] = vi;
  const float denom = __fadd_rn(__fsqrt_rn(__fdiv_rn(vi, k.bias_correction2)), k.eps);
  float update = __fdiv_rn(__fdiv_rn(mi, k.bias_correction1), denom);
  if (k.decoupled) update = __fadd_rn(update, __fmul_rn(k.decay, p));
  const float updated = __fsub_rn(p, __fmul_rn(k.lr, update));
  params[i] = updated;
  round_into(params16, i, updated);
}

template <typename G, typename P>
__global__ void sgd_kernel(float* params, const G* grads, float scale, P* params16, float* buf,
                           int64_t n, float decay, float momentum, float one_minus_dampening,
                           float neg_lr, bool nesterov, bool first) {
  const int64_t i = detail::element();
  if (i >= n) return;
  float d = gradient(grads, scale, i);
  if (decay != 0.0f) d = __fadd_rn(d, __fmul_rn(decay, params[i]));
  if (buf != nullptr) {
    const float b =
        first ? d : __fadd_rn(__fmul_rn(momentum, buf[i]), __fmul_rn(one_minus_dampening, d));
    buf[i] = b;
    d = nesterov ? __fadd_rn(d, __fmul_rn(momentum, b)) : b;
  }
  const float updated = __fadd_rn(params[i], __fmul_rn(neg_lr, d));
  params[i] = updated;
  round_into(params16, i, updated);
}

// Calls fn(grads, params16) typed by io's storages (params16 nullptr, typed as float, without a
// copy).
template <typename Fn>
void with_storages(const StepIo& io, Fn&& fn) {
  detail::dispatch_storage(io.grad_dtype, [&](auto grad_tag) {
    using G = typename decltype(grad_tag)::type;
    const auto* grads = static_cast<const G*>(io.grads);
    if (io.params16 == nullptr) return fn(grads, static_cast<float*>(nullptr));
    detail::dispatch_storage(io.params16_dtype, [&](auto param_tag) {
      using P = typename decltype(param_tag)::type;
      fn(grads, static_cast<P*>(io.params16));
    });
  });
}

}  // namespace

void sgd_step(float* params, const StepIo& io, float* momentum_buffer, int64_t n, double lr,
              int64_t step, const SgdOptions& options, cudaStream_t stream) {
  DS_CUDA_REQUIRE(step >= 1 && n >= 0);
  if (n == 0) return;
  with_storages(io, [&](auto grads, auto params16) {
    sgd_kernel<<<detail::blocks_for(n), detail::kBlock, 0, stream>>>(
        params, grads, io.grad_scale, params16, momentum_buffer, n,
        static_cast<float>(options.weight_decay), static_cast<float>(options.momentum),
        static_cast<float>(1.0 - options.dampening), static_cast<float>(-lr), options.nesterov,
        step == 1);
    DS_CUDA_LAUNCHED();
  });
}

void adam_step(float* params, const StepIo& io, float* exp_avg, float* exp_avg_sq, int64_t n,
               double lr, int64_t step, const AdamOptions& options, cudaStream_t stream) {
  DS_CUDA_REQUIRE(step >= 1 && n >= 0);
  if (n == 0) return;
  const AdamCoefficients k = adam_coefficients(options, lr, step);
  with_storages(io, [&](auto grads, auto params16) {
    adam_kernel<<<detail::blocks_for(n), detail::kBlock, 0, stream>>>(
        params, grads, io.grad_scale, params16, exp_avg, exp_avg_sq, n, k);
    DS_CUDA_LAUNCHED();
  });
}

}  // namespace ds::tensor::cuda
