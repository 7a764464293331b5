#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/kernel_helpers.cuh"
#include "tensor/cuda/storage_types.cuh"

namespace ds::tensor::cuda {
namespace {

// The dtype travels as a small integer: the kernels switch on it per element, which costs
// nothing next to the memory traffic and keeps one kernel per operation.
enum Kind : int { kF32 = 0, kBF16 = 1, kF16 = 2 };

Kind kind_of(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return kBF16;
    case DType::kF16:
      return kF16;
    case DType::kF32:
      break;
  }
  return kF32;
}

// storage_types.cuh's typed loads and stores, picked per element by the run-time kind.
__device__ inline float load(const void* p, int kind, int64_t i) {
  if (kind == kBF16) return detail::load(static_cast<const __nv_bfloat16*>(p), i);
  if (kind == kF16) return detail::load(static_cast<const __half*>(p), i);
  return detail::load(static_cast<const float*>(p), i);
}

__device__ inline void store(void* p, int kind, int64_t i, float v) {
  if (kind == kBF16) {
    detail::store(static_cast<__nv_bfloat16*>(p), i, v);
  } else if (kind == kF16) {
    detail::store(static_cast<__half*>(p), i, v);
  } else {
    detail::store(static_cast<float*>(p), i, v);
  }
}

// out = scale * in (+ out when accumulate). __fmul_rn/__fadd_rn: no FMA contraction, each
// operation rounded on its own.
__global__ void convert_kernel(void* out, int out_kind, const void* in, int in_kind, int64_t n,
                               float scale, bool accumulate) {
  const int64_t i = detail::element();
  if (i >= n) return;
  float v = load(in, in_kind, i);
  if (scale != 1.0f) v = __fmul_rn(scale, v);
  if (accumulate) v = __fadd_rn(load(out, out_kind, i), v);
  store(out, out_kind, i, v);
}

// The same eight elements a thread, in 16-byte loads and stores, where both tensors start 16-byte
// aligned: the per-element kernel above moves about a third of what the memory can (an H100 ran
// the bf16 run's roundings at 1.1 TB/s with it). The arithmetic is the same, element by element.
template <typename T>
struct alignas(16) Eight {
  T x[8];
};

template <typename In, typename Out>
__global__ void convert_eight_kernel(Out* out, const In* in, int64_t groups, float scale,
                                     bool accumulate) {
  const int64_t g = detail::element();
  if (g >= groups) return;
  const Eight<In> a = reinterpret_cast<const Eight<In>*>(in)[g];
  Eight<Out> b;
  if (accumulate) b = reinterpret_cast<const Eight<Out>*>(out)[g];
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    float v = detail::load(a.x, k);
    if (scale != 1.0f) v = __fmul_rn(scale, v);
    if (accumulate) v = __fadd_rn(detail::load(b.x, k), v);
    detail::store(b.x, k, v);
  }
  reinterpret_cast<Eight<Out>*>(out)[g] = b;
}

// Calls fn(In{}, Out{}) with the element types of a conversion from in_dtype to out_dtype.
template <typename Fn>
void with_types(DType out_dtype, DType in_dtype, Fn&& fn) {
  const auto with_out = [&](auto in_tag) {
    switch (out_dtype) {
      case DType::kBF16:
        return fn(in_tag, __nv_bfloat16{});
      case DType::kF16:
        return fn(in_tag, __half{});
      case DType::kF32:
        return fn(in_tag, float{});
    }
  };
  switch (in_dtype) {
    case DType::kBF16:
      return with_out(__nv_bfloat16{});
    case DType::kF16:
      return with_out(__half{});
    case DType::kF32:
      return with_out(float{});
  }
}

void launch(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n, float scale,
            bool accumulate, cudaStream_t stream) {
  DS_CUDA_REQUIRE(n >= 0);
  if (n == 0) return;
  if (!accumulate && scale == 1.0f && out_dtype == in_dtype) {
    if (out != in) {
      DS_CUDA_CALL(cudaMemcpyAsync(out, in, dtype_size(in_dtype) * static_cast<size_t>(n),
                                   cudaMemcpyDeviceToDevice, stream));
    }
    return;
  }
  if (aligned_16(out) && aligned_16(in) && n >= 8) {
    const int64_t groups = n / 8;
    with_types(out_dtype, in_dtype, [&](auto in_type, auto out_type) {
      using In = decltype(in_type);
      using Out = decltype(out_type);
      convert_eight_kernel<<<detail::blocks_for(groups), detail::kBlock, 0, stream>>>(
          static_cast<Out*>(out), static_cast<const In*>(in), groups, scale, accumulate);
    });
    DS_CUDA_LAUNCHED();
    const int64_t done = groups * 8;
    if (done == n) return;
    out = static_cast<char*>(out) + dtype_size(out_dtype) * static_cast<size_t>(done);
    in = static_cast<const char*>(in) + dtype_size(in_dtype) * static_cast<size_t>(done);
    n -= done;
  }
  convert_kernel<<<detail::blocks_for(n), detail::kBlock, 0, stream>>>(
      out, kind_of(out_dtype), in, kind_of(in_dtype), n, scale, accumulate);
  DS_CUDA_LAUNCHED();
}

}  // namespace

void to_f32(float* out, const void* in, DType dtype, int64_t n, cudaStream_t stream) {
  launch(out, DType::kF32, in, dtype, n, 1.0f, false, stream);
}

void from_f32(void* out, DType dtype, const float* in, int64_t n, cudaStream_t stream) {
  launch(out, dtype, in, DType::kF32, n, 1.0f, false, stream);
}

void add_f32_into(void* out, DType dtype, const float* in, int64_t n, cudaStream_t stream) {
  launch(out, dtype, in, DType::kF32, n, 1.0f, true, stream);
}

void convert_scaled(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                    float scale, cudaStream_t stream) {
  launch(out, out_dtype, in, in_dtype, n, scale, false, stream);
}

void add_scaled_into(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n,
                     float scale, cudaStream_t stream) {
  launch(out, out_dtype, in, in_dtype, n, scale, true, stream);
}

const void* rounded_to_bf16(const float* values, int64_t n, DeviceBuffer& copy,
                            cudaStream_t stream) {
  if (values == nullptr) return nullptr;
  copy.grow(dtype_size(DType::kBF16) * static_cast<size_t>(n));
  from_f32(copy.data(), DType::kBF16, values, n, stream);
  return copy.data();
}

}  // namespace ds::tensor::cuda
