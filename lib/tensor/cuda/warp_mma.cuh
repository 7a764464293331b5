// The warp-wide bf16 tensor-core product mma.sync.m16n8k16 (PTX ISA, "Warp-level matrix
// multiply-accumulate"), with the register layouts spelled out so that kernels can keep its
// operands and results in registers: a result fragment feeds the next product as an operand
// without a trip through shared memory, which WMMA's opaque fragments do not allow. Lane l of the
// warp is in group g = l / 4 and has index t = l % 4 within it:
//
//   A, 16x16 bf16 (row-major): a[0] = (g, 2t..2t+1)   a[1] = (g+8, 2t..2t+1)
//                              a[2] = (g, 2t+8..2t+9) a[3] = (g+8, 2t+8..2t+9)
//   B, 16x8 bf16 (k x n):      b[0] = (k 2t..2t+1, n g)  b[1] = (k 2t+8..2t+9, n g)
//   C and D, 16x8 fp32:        c[0], c[1] = (g, 2t), (g, 2t+1)  c[2], c[3] = (g+8, 2t), (g+8, 2t+1)
//
// Each 32-bit register holds two bf16, the lower index in the lower half. The operands come from
// shared memory by ldmatrix, four 8x8 matrices per instruction. Under DS_EMULATED_CUDA
// (tests on machines without a GPU, test/emulated_cuda/) the product is computed from every
// lane's registers, gathered through the emulated warp, in fp32 as the hardware accumulates.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "tensor/cuda/device_primitives.cuh"

namespace ds::tensor::cuda::detail {

using Bf16 = __nv_bfloat16;

// Where the calling lane sits in the fragments above.
struct FragmentLane {
  int lane, g, t;
  __device__ FragmentLane()
      : lane(static_cast<int>(threadIdx.x % kWarp)), g(lane / 4), t(lane % 4) {}
};

__device__ __forceinline__ uint16_t bf16_bits(Bf16 value) {
  uint16_t bits;
  memcpy(&bits, &value, sizeof bits);
  return bits;
}

// Two floats rounded to bf16 in one register, `low` in the lower half.
__device__ __forceinline__ uint32_t pack_bf16(float low, float high) {
  return uint32_t{bf16_bits(__float2bfloat16(low))} | uint32_t{bf16_bits(__float2bfloat16(high))}
                                                          << 16;
}

// Four 8x8 bf16 matrices from shared memory in one instruction (ldmatrix .x4): lane l gives the
// address of row l % 8 of matrix l / 8 (16-byte aligned), and gets in d[i] row l / 4, columns
// 2(l % 4) and 2(l % 4) + 1 of matrix i, the fragments' layout.
// With .trans (load_matrices_transposed) each matrix arrives transposed: d[i] holds rows
// 2(l % 4) and 2(l % 4) + 1 of column l / 4 of matrix i.
#if defined(DS_EMULATED_CUDA)
// The two bf16 at p (4-byte aligned), as one register.
inline uint32_t load_pair(const Bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }
inline void load_matrices(uint32_t (&d)[4], const Bf16* row) {
  ds_emulated_cuda::require_aligned(row, 16, "an ldmatrix row");
  const auto rows = ds_emulated_cuda::warp_all(row);
  const FragmentLane lane;
  for (int i = 0; i < 4; ++i) d[i] = load_pair(rows[8 * i + lane.g] + 2 * lane.t);
}
inline void load_matrices_transposed(uint32_t (&d)[4], const Bf16* row) {
  ds_emulated_cuda::require_aligned(row, 16, "an ldmatrix row");
  const auto rows = ds_emulated_cuda::warp_all(row);
  const FragmentLane lane;
  for (int i = 0; i < 4; ++i) {
    d[i] = uint32_t{bf16_bits(rows[8 * i + 2 * lane.t][lane.g])} |
           uint32_t{bf16_bits(rows[8 * i + 2 * lane.t + 1][lane.g])} << 16;
  }
}
#else
__device__ __forceinline__ void load_matrices(uint32_t (&d)[4], const Bf16* row) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
               : "r"(address));
}
__device__ __forceinline__ void load_matrices_transposed(uint32_t (&d)[4], const Bf16* row) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
               : "r"(address));
}
#endif

// A's fragment from the 16x16 block at p of a row-major bf16 matrix in shared memory with row
// stride ld (a multiple of 8): matrices (rows 0-7, 8-15) x (columns 0-7, 8-15), rows first.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const Bf16* p, int ld, FragmentLane lane) {
  const int matrix = lane.lane / 8;
  load_matrices(a, p + (lane.lane % 8 + 8 * (matrix % 2)) * ld + 8 * (matrix / 2));
}

// B's fragments (k x n = 16x8 each) of two neighbouring 8-column blocks: first gets columns n 0-7,
// second 8-15, from the 16x16 block at p of a row-major bf16 matrix in shared memory with row
// stride ld (a multiple of 8). kStoredTransposed: the matrix holds B(k, n) at row n, column k
// (B's transpose: a tile whose rows are B's columns), read as it is; otherwise at row k, column
// n, transposed on the way (ldmatrix .trans). Either way the four 8x8 matrices are
// (k 0-7, 8-15) x (n 0-7, 8-15), k first.
template <bool kStoredTransposed>
__device__ __forceinline__ void load_b_pair(uint32_t (&first)[2], uint32_t (&second)[2],
                                            const Bf16* p, int ld, FragmentLane lane) {
  const int matrix = lane.lane / 8, k_half = matrix % 2, n_half = matrix / 2;
  uint32_t d[4];
  if constexpr (kStoredTransposed) {
    load_matrices(d, p + (lane.lane % 8 + 8 * n_half) * ld + 8 * k_half);
  } else {
    load_matrices_transposed(d, p + (lane.lane % 8 + 8 * k_half) * ld + 8 * n_half);
  }
  first[0] = d[0];
  first[1] = d[1];
  second[0] = d[2];
  second[1] = d[3];
}

// A's fragment from two result fragments side by side (columns 0..7 and 8..15), rounded to
// bf16: the layouts line up, so a product's result is the next one's operand in place.
__device__ __forceinline__ void a_from_results(uint32_t (&a)[4], const float (&left)[4],
                                               const float (&right)[4]) {
  a[0] = pack_bf16(left[0], left[1]);
  a[1] = pack_bf16(left[2], left[3]);
  a[2] = pack_bf16(right[0], right[1]);
  a[3] = pack_bf16(right[2], right[3]);
}

#if defined(DS_EMULATED_CUDA)

inline float bf16_half(uint32_t pair, int half) {
  const uint16_t bits = static_cast<uint16_t>(half == 0 ? pair : pair >> 16);
  Bf16 value;
  memcpy(&value, &bits, sizeof bits);
  return __bfloat162float(value);
}

// d += A B over the warp, every lane's operands gathered first.
inline void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  struct Operands {
    uint32_t a[4], b[2];
  };
  const auto all = ds_emulated_cuda::warp_all(Operands{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}});
  const auto a_at = [&](int row, int k) {  // A(row, k) from the lane that holds it
    const Operands& o = all[(row % 8) * 4 + (k % 8) / 2];
    return bf16_half(o.a[(k / 8) * 2 + row / 8], k % 2);
  };
  const auto b_at = [&](int k, int n) {
    const Operands& o = all[n * 4 + (k % 8) / 2];
    return bf16_half(o.b[k / 8], k % 2);
  };
  const FragmentLane lane;
  for (int e = 0; e < 4; ++e) {
    const int row = lane.g + (e / 2) * 8, col = 2 * lane.t + e % 2;
    float sum = d[e];
    for (int k = 0; k < 16; ++k) sum += a_at(row, k) * b_at(k, col);
    d[e] = sum;
  }
}

#else

// d += A B over the warp.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

#endif

}  // namespace ds::tensor::cuda::detail
