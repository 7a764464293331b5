// The emulation's WMMA (see cuda_runtime.h here), for 16x16x16 fragments: every lane holds
// the whole matrix in fp32 (the hardware spreads it over the warp in an unspecified layout, which
// code cannot rely on anyway), loads read it whole, and lane 0 alone stores, so a kernel must
// synchronise the warp between a store and its lanes' reads as on a GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

constexpr int kSide = 16;

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == kSide && N == kSide && K == kSide, "the emulation has 16x16x16 only");
  float x[kSide * kSide];
};

inline float to_float(float value) { return value; }
inline float to_float(__nv_bfloat16 value) { return __bfloat162float(value); }

template <typename Layout>
constexpr bool col_major_v = false;
template <>
constexpr bool col_major_v<col_major> = true;

template <typename Use, typename T, typename Layout>
void load_matrix_sync(fragment<Use, kSide, kSide, kSide, T, Layout>& f, const T* p, unsigned ld) {
  for (int r = 0; r < kSide; ++r) {
    for (int c = 0; c < kSide; ++c) {
      f.x[r * kSide + c] = to_float(col_major_v<Layout> ? p[c * ld + r] : p[r * ld + c]);
    }
  }
}

inline void load_matrix_sync(fragment<accumulator, kSide, kSide, kSide, float>& f, const float* p,
                             unsigned ld, layout_t layout) {
  for (int r = 0; r < kSide; ++r) {
    for (int c = 0; c < kSide; ++c) {
      f.x[r * kSide + c] = layout == mem_col_major ? p[c * ld + r] : p[r * ld + c];
    }
  }
}

inline void store_matrix_sync(float* p, const fragment<accumulator, kSide, kSide, kSide, float>& f,
                              unsigned ld, layout_t layout) {
  if (ds_emulated_cuda::linear_thread() % ds_emulated_cuda::kWarpSize != 0) return;
  for (int r = 0; r < kSide; ++r) {
    for (int c = 0; c < kSide; ++c) {
      (layout == mem_col_major ? p[c * ld + r] : p[r * ld + c]) = f.x[r * kSide + c];
    }
  }
}

template <typename Use, typename T, typename Layout>
void fill_fragment(fragment<Use, kSide, kSide, kSide, T, Layout>& f, float value) {
  for (float& x : f.x) x = value;
}

// d = a b + c, with d free to be c.
template <typename T, typename LayoutA, typename LayoutB>
void mma_sync(fragment<accumulator, kSide, kSide, kSide, float>& d,
              const fragment<matrix_a, kSide, kSide, kSide, T, LayoutA>& a,
              const fragment<matrix_b, kSide, kSide, kSide, T, LayoutB>& b,
              const fragment<accumulator, kSide, kSide, kSide, float>& c) {
  float result[kSide * kSide];
  for (int r = 0; r < kSide; ++r) {
    for (int n = 0; n < kSide; ++n) {
      float sum = c.x[r * kSide + n];
      for (int k = 0; k < kSide; ++k) sum += a.x[r * kSide + k] * b.x[k * kSide + n];
      result[r * kSide + n] = sum;
    }
  }
  for (int e = 0; e < kSide * kSide; ++e) d.x[e] = result[e];
}

}  // namespace nvcuda::wmma
