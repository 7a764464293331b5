// The kernels of bf16_kernels.h: each is a template over the storage type (float,
// __nv_bfloat16, __half) whose loads widen to fp32 and whose stores round to nearest even; a
// host switch on the DType picks the instance. Launch shapes follow kernels.cu (a thread per
// element, a warp per row, a block per vocabulary row, detail::column_sum for the
// fixed-order column sums).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "tensor/cpu/kernels.h"
#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/kernel_helpers.cuh"

// detail::column_sum into 16-bit storage: the column's total added in fp32, rounded once.
namespace ds::tensor::cuda::detail {
template <>
struct ColumnAdd<__nv_bfloat16> {
  __device__ static void add(__nv_bfloat16* dst, int c, float total) {
    dst[c] = __float2bfloat16_rn(__bfloat162float(dst[c]) + total);
  }
};
template <>
struct ColumnAdd<__half> {
  __device__ static void add(__half* dst, int c, float total) {
    dst[c] = __float2half_rn(__half2float(dst[c]) + total);
  }
};
}  // namespace ds::tensor::cuda::detail

namespace ds::tensor::cuda::mixed {

using namespace detail;

namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;
constexpr int kCrossEntropyBlock = 512;

__device__ inline float load(const float* p, int64_t i) { return p[i]; }
__device__ inline float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ inline float load(const __half* p, int64_t i) { return __half2float(p[i]); }

__device__ inline void store(float* p, int64_t i, float x) { p[i] = x; }
__device__ inline void store(__nv_bfloat16* p, int64_t i, float x) {
  p[i] = __float2bfloat16_rn(x);
}
__device__ inline void store(__half* p, int64_t i, float x) { p[i] = __float2half_rn(x); }

template <typename T>
struct Tag {
  using type = T;
};

// Calls fn(Tag<T>{}) with T the storage type of `dtype`.
template <typename Fn>
void dispatch(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kF32:
      fn(Tag<float>{});
      return;
    case DType::kBF16:
      fn(Tag<__nv_bfloat16>{});
      return;
    case DType::kF16:
      fn(Tag<__half>{});
      return;
  }
  DS_CUDA_REQUIRE(!"unknown DType");
}

__device__ inline int warp_row() {
  return static_cast<int>(blockIdx.x) * kRowsPerBlock + static_cast<int>(threadIdx.x) / kWarp;
}

__device__ inline int64_t element() { return int64_t{blockIdx.x} * blockDim.x + threadIdx.x; }

__device__ inline float gelu_tanh(float x) {
  return tanhf(kGeluScale * (x + kGeluCubic * x * x * x));
}

__device__ inline float gelu(float x) { return 0.5f * x * (1.0f + gelu_tanh(x)); }

__device__ inline float gelu_grad(float x) {
  const float th = gelu_tanh(x);
  const float du = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

template <typename T>
__global__ void encoder_forward_kernel(T* out, const int32_t* tokens, const T* wte, const T* wpe,
                                       int64_t BT, int T_, int C) {
  const int64_t i = element();
  if (i >= BT * C) return;
  const int64_t bt = i / C;
  const int c = static_cast<int>(i % C);
  const int t = static_cast<int>(bt % T_);
  const float position = wpe != nullptr ? load(wpe, int64_t{t} * C + c) : 0.0f;
  store(out, i, load(wte, int64_t{tokens[bt]} * C + c) + position);
}

template <typename T>
__global__ void encoder_backward_kernel(float* dwte, float* dwpe, const T* dout,
                                        const int32_t* tokens, int64_t BT, int T_, int C) {
  const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= C) return;
  for (int64_t n = 0; n < BT; ++n) {
    const float d = load(dout, n * C + c);
    dwte[int64_t{tokens[n]} * C + c] += d;
    if (dwpe != nullptr) dwpe[(n % T_) * C + c] += d;
  }
}

template <typename T>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp,
                                         const T* weight, const T* bias, int N, int C, float eps) {
  const int n = warp_row();
  if (n >= N) return;
  const int lane = threadIdx.x % kWarp;
  const T* x = inp + int64_t{n} * C;
  T* o = out + int64_t{n} * C;
  float sum = 0.0f;
  for (int c = lane; c < C; c += kWarp) sum += load(x, c);
  const float m = warp_sum(sum) / C;
  float sq = 0.0f;
  for (int c = lane; c < C; c += kWarp) {
    const float dev = load(x, c) - m;
    sq += dev * dev;
  }
  const float s = 1.0f / sqrtf(warp_sum(sq) / C + eps);
  for (int c = lane; c < C; c += kWarp) {
    store(o, c, (load(x, c) - m) * s * load(weight, c) + load(bias, c));
  }
  if (lane == 0) {
    if (mean != nullptr) mean[n] = m;
    if (rstd != nullptr) rstd[n] = s;
  }
}

template <typename T>
__global__ void layernorm_backward_input_kernel(T* dinp, const T* dout, const T* inp,
                                                const T* weight, const float* mean,
                                                const float* rstd, int N, int C) {
  const int n = warp_row();
  if (n >= N) return;
  const int lane = threadIdx.x % kWarp;
  const T* x = inp + int64_t{n} * C;
  const T* d = dout + int64_t{n} * C;
  T* di = dinp + int64_t{n} * C;
  const float m = mean[n];
  const float s = rstd[n];
  float dnorm = 0.0f;
  float dnorm_norm = 0.0f;
  for (int c = lane; c < C; c += kWarp) {
    const float wd = load(weight, c) * load(d, c);
    dnorm += wd;
    dnorm_norm += wd * (load(x, c) - m) * s;
  }
  const float dnorm_mean = warp_sum(dnorm) / C;
  const float dnorm_norm_mean = warp_sum(dnorm_norm) / C;
  for (int c = lane; c < C; c += kWarp) {
    const float norm = (load(x, c) - m) * s;
    const float grad = (load(weight, c) * load(d, c) - dnorm_mean - norm * dnorm_norm_mean) * s;
    store(di, c, load(di, c) + grad);
  }
}

template <typename T>
struct LayernormWeightTerm {
  const T* dout;
  const T* inp;
  const float* mean;
  const float* rstd;
  int C;
  __device__ float operator()(int n, int c) const {
    const int64_t i = int64_t{n} * C + c;
    return load(dout, i) * (load(inp, i) - mean[n]) * rstd[n];
  }
};

template <typename T>
struct RowsTerm {
  const T* x;
  int C;
  __device__ float operator()(int n, int c) const { return load(x, int64_t{n} * C + c); }
};

template <typename T>
__global__ void gelu_forward_kernel(T* out, const T* inp, int64_t N) {
  const int64_t i = element();
  if (i < N) store(out, i, gelu(load(inp, i)));
}

template <typename T>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, int64_t N) {
  const int64_t i = element();
  if (i < N) store(dinp, i, load(dinp, i) + gelu_grad(load(inp, i)) * load(dout, i));
}

template <typename T>
__global__ void gelu_backward_inplace_kernel(T* d, const T* inp, int64_t N) {
  const int64_t i = element();
  if (i < N) store(d, i, gelu_grad(load(inp, i)) * load(d, i));
}

template <typename T>
__global__ void residual_forward_kernel(T* out, const T* a, const T* b, int64_t N) {
  const int64_t i = element();
  if (i < N) store(out, i, load(a, i) + load(b, i));
}

template <typename T>
__global__ void add_inplace_kernel(T* dst, const T* src, int64_t N) {
  const int64_t i = element();
  if (i < N) store(dst, i, load(dst, i) + load(src, i));
}

template <typename T>
__global__ void broadcast_rows_kernel(T* out, const T* row, int64_t N, int C) {
  const int64_t i = element();
  if (i < N * C) out[i] = row[i % C];
}

// One block per row. Three passes over the row's logits: the maximum, the sum of exponentials
// (in double, as the CPU), then the gradient written over dlogits; every element is read and
// then written by the same thread, and the target's logit is read before the first block
// synchronisation, so dlogits may alias logits.
template <typename T>
__global__ void softmax_cross_entropy_kernel(float* losses, T* dlogits, const T* logits,
                                             const int32_t* targets, float dloss, int V) {
  __shared__ float shared_max[kWarp];
  __shared__ double shared_sum[kWarp];
  const int64_t n = blockIdx.x;
  const T* x = logits + n * V;
  const int32_t target = targets[n];
  const bool ignored = target == cpu::kIgnoreTarget;
  const float target_logit = ignored ? 0.0f : load(x, target);
  float maxv = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) maxv = fmaxf(maxv, load(x, i));
  maxv = block_reduce(maxv, shared_max, Max{});
  double sum = 0.0;
  for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(load(x, i) - maxv);
  sum = block_reduce(sum, shared_sum, Add{});
  if (threadIdx.x == 0) {
    losses[n] = ignored ? 0.0f : static_cast<float>(log(sum) + double(maxv) - double(target_logit));
  }
  if (dlogits == nullptr) return;
  T* d = dlogits + n * V;
  if (ignored) {
    for (int i = threadIdx.x; i < V; i += blockDim.x) store(d, i, 0.0f);
    return;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    // Rounded as the CPU: p = e * inv, then p * dloss, then the one-hot subtracted.
    const float p = __fmul_rn(expf(load(x, i) - maxv), inv);
    const float g = __fmul_rn(p, dloss);
    store(d, i, i == target ? g - dloss : g);
  }
}

}  // namespace

void encoder_forward(void* out, const int32_t* tokens, const void* wte, const void* wpe, int B,
                     int T, int C, DType dtype, cudaStream_t stream) {
  const int64_t total = int64_t{B} * T * C;
  if (total == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    encoder_forward_kernel<<<blocks_for(total), kBlock, 0, stream>>>(
        static_cast<S*>(out), tokens, static_cast<const S*>(wte), static_cast<const S*>(wpe),
        int64_t{B} * T, T, C);
  });
  DS_CUDA_LAUNCHED();
}

void encoder_backward(float* dwte, float* dwpe, const void* dout, const int32_t* tokens, int B,
                      int T, int C, DType dtype, cudaStream_t stream) {
  if (C == 0 || int64_t{B} * T == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    encoder_backward_kernel<<<blocks_for(C), kBlock, 0, stream>>>(
        dwte, dwpe, static_cast<const S*>(dout), tokens, int64_t{B} * T, T, C);
  });
  DS_CUDA_LAUNCHED();
}

void layernorm_forward(void* out, float* mean, float* rstd, const void* inp, const void* weight,
                       const void* bias, int N, int C, float eps, DType dtype,
                       cudaStream_t stream) {
  if (N == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    layernorm_forward_kernel<<<blocks_for(N, kRowsPerBlock), kBlock, 0, stream>>>(
        static_cast<S*>(out), mean, rstd, static_cast<const S*>(inp), static_cast<const S*>(weight),
        static_cast<const S*>(bias), N, C, eps);
  });
  DS_CUDA_LAUNCHED();
}

void layernorm_backward(void* dinp, void* dweight, void* dbias, const void* dout, const void* inp,
                        const void* weight, const float* mean, const float* rstd, int N, int C,
                        DType dtype, cudaStream_t stream) {
  if (N == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* d = static_cast<const S*>(dout);
    const S* x = static_cast<const S*>(inp);
    layernorm_backward_input_kernel<<<blocks_for(N, kRowsPerBlock), kBlock, 0, stream>>>(
        static_cast<S*>(dinp), d, x, static_cast<const S*>(weight), mean, rstd, N, C);
    DS_CUDA_LAUNCHED();
    column_sum(static_cast<S*>(dweight), N, C, LayernormWeightTerm<S>{d, x, mean, rstd, C}, stream);
    column_sum(static_cast<S*>(dbias), N, C, RowsTerm<S>{d, C}, stream);
  });
}

void gelu_forward(void* out, const void* inp, int64_t N, DType dtype, cudaStream_t stream) {
  if (N == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    gelu_forward_kernel<<<blocks_for(N), kBlock, 0, stream>>>(static_cast<S*>(out),
                                                              static_cast<const S*>(inp), N);
  });
  DS_CUDA_LAUNCHED();
}

void gelu_backward(void* dinp, const void* inp, const void* dout, int64_t N, DType dtype,
                   cudaStream_t stream) {
  if (N == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    gelu_backward_kernel<<<blocks_for(N), kBlock, 0, stream>>>(
        static_cast<S*>(dinp), static_cast<const S*>(inp), static_cast<const S*>(dout), N);
  });
  DS_CUDA_LAUNCHED();
}

void gelu_backward_inplace(void* d, const void* inp, int64_t N, DType dtype, cudaStream_t stream) {
  if (N == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    gelu_backward_inplace_kernel<<<blocks_for(N), kBlock, 0, stream>>>(
        static_cast<S*>(d), static_cast<const S*>(inp), N);
  });
  DS_CUDA_LAUNCHED();
}

void residual_forward(void* out, const void* a, const void* b, int64_t N, DType dtype,
                      cudaStream_t stream) {
  if (N == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    residual_forward_kernel<<<blocks_for(N), kBlock, 0, stream>>>(
        static_cast<S*>(out), static_cast<const S*>(a), static_cast<const S*>(b), N);
  });
  DS_CUDA_LAUNCHED();
}

void add_inplace(void* dst, const void* src, int64_t N, DType dtype, cudaStream_t stream) {
  if (N == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    add_inplace_kernel<<<blocks_for(N), kBlock, 0, stream>>>(static_cast<S*>(dst),
                                                             static_cast<const S*>(src), N);
  });
  DS_CUDA_LAUNCHED();
}

void softmax_cross_entropy(float* losses, void* dlogits, const void* logits, const int32_t* targets,
                           float dloss, int N, int V, DType dtype, cudaStream_t stream) {
  if (N == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    softmax_cross_entropy_kernel<<<N, kCrossEntropyBlock, 0, stream>>>(
        losses, static_cast<S*>(dlogits), static_cast<const S*>(logits), targets, dloss, V);
  });
  DS_CUDA_LAUNCHED();
}

void broadcast_rows(void* out, const void* row, int N, int C, DType dtype, cudaStream_t stream) {
  const int64_t total = int64_t{N} * C;
  if (total == 0) return;
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    broadcast_rows_kernel<<<blocks_for(total), kBlock, 0, stream>>>(
        static_cast<S*>(out), static_cast<const S*>(row), int64_t{N}, C);
  });
  DS_CUDA_LAUNCHED();
}

void matmul_bias_backward(void* dbias, const void* dout, int N, int OC, DType dtype,
                          cudaStream_t stream) {
  dispatch(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    column_sum(static_cast<S*>(dbias), N, OC, RowsTerm<S>{static_cast<const S*>(dout), OC}, stream);
  });
}

}  // namespace ds::tensor::cuda::mixed
