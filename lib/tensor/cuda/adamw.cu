// One fused Adam/AdamW kernel; see adamw.h. The __f*_rn intrinsics round each operation on
// its own, which keeps nvcc from contracting a*b+c into an FMA: optim::Adam's host loop
// rounds every step, and the point is to reproduce it bit for bit.
#include <cuda_runtime.h>

#include "tensor/cuda/adamw.h"
#include "tensor/cuda/kernel_helpers.cuh"

namespace ds::tensor::cuda {
namespace {

__global__ void adam_kernel(float* params, const float* grads, float* m, float* v, int64_t n,
                            AdamCoefficients k) {
  const int64_t i = detail::element();
  if (i >= n) return;
  const float p = params[i];
  float g = grads[i];
  if (!k.decoupled) g = __fadd_rn(g, __fmul_rn(k.decay, p));
  const float mi = __fadd_rn(__fmul_rn(k.beta1, m[i]), __fmul_rn(k.one_minus_beta1, g));
  const float vi =
      __fadd_rn(__fmul_rn(k.beta2, v[i]), __fmul_rn(__fmul_rn(k.one_minus_beta2, g), g));
  m[i] = mi;
  v[i] = vi;
  const float denom = __fadd_rn(__fsqrt_rn(__fdiv_rn(vi, k.bias_correction2)), k.eps);
  float update = __fdiv_rn(__fdiv_rn(mi, k.bias_correction1), denom);
  if (k.decoupled) update = __fadd_rn(update, __fmul_rn(k.decay, p));
  params[i] = __fsub_rn(p, __fmul_rn(k.lr, update));
}

__global__ void sgd_kernel(float* params, const float* grads, float* buf, int64_t n, float decay,
                           float momentum, float one_minus_dampening, float neg_lr, bool nesterov,
                           bool first) {
  const int64_t i = detail::element();
  if (i >= n) return;
  float d = grads[i];
  if (decay != 0.0f) d = __fadd_rn(d, __fmul_rn(decay, params[i]));
  if (buf != nullptr) {
    const float b =
        first ? d : __fadd_rn(__fmul_rn(momentum, buf[i]), __fmul_rn(one_minus_dampening, d));
    buf[i] = b;
    d = nesterov ? __fadd_rn(d, __fmul_rn(momentum, b)) : b;
  }
  params[i] = __fadd_rn(params[i], __fmul_rn(neg_lr, d));
}

}  // namespace

void sgd_step(float* params, const float* grads, float* momentum_buffer, int64_t n, double lr,
              int64_t step, const SgdOptions& options, cudaStream_t stream) {
  DS_CUDA_REQUIRE(step >= 1 && n >= 0);
  if (n == 0) return;
  sgd_kernel<<<detail::blocks_for(n), detail::kBlock, 0, stream>>>(
      params, grads, momentum_buffer, n, static_cast<float>(options.weight_decay),
      static_cast<float>(options.momentum), static_cast<float>(1.0 - options.dampening),
      static_cast<float>(-lr), options.nesterov, step == 1);
  DS_CUDA_LAUNCHED();
}

void adam_step(float* params, const float* grads, float* exp_avg, float* exp_avg_sq, int64_t n,
               double lr, int64_t step, const AdamOptions& options, cudaStream_t stream) {
  DS_CUDA_REQUIRE(step >= 1 && n >= 0);
  if (n == 0) return;
  const AdamCoefficients k = adam_coefficients(options, lr, step);
  adam_kernel<<<detail::blocks_for(n), detail::kBlock, 0, stream>>>(params, grads, exp_avg,
                                                                    exp_avg_sq, n, k);
  DS_CUDA_LAUNCHED();
}

}  // namespace ds::tensor::cuda
