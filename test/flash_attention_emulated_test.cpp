// The fp32 flash-style attention kernels (flash_attention_kernels.cuh) built with the host
// compiler against the CPU emulation of CUDA in emulated_cuda/, launched as
// flash_attention_forward/backward launch them, against the CPU attention kernels at the
// thresholds of the cuda test of the same kernels: their tiling, causal masking, online softmax
// and synchronisation, checked on machines without a GPU.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>

#include "attention_reference.h"
#include "tensor/cuda/flash_attention_kernels.cuh"

namespace {

using namespace ds_parity_test;
namespace flash = ds::tensor::cuda::flash;
using ds::tensor::cuda::detail::blocks_for;

// row_dot_chunks_kernel as flash_attention.cu launches it where row_dot_group allows.
template <typename S>
Vec chunked_row_dot(const std::vector<S>& dout, const std::vector<S>& out, int B, int T, int C,
                    int NH) {
  constexpr int kCount = ds::tensor::cuda::detail::Chunk<S>::kCount;
  const int group = flash::row_dot_group(dout.data(), out.data(), C, NH);
  REQUIRE(group == C / NH / kCount);
  const int64_t chunks = int64_t{B} * T * C / kCount;
  Vec row_dot = random_vec(static_cast<size_t>(B) * NH * T, 39);  // garbage to overwrite
  ds_emulated_cuda::launch(flash::row_dot_chunks_kernel<S>, dim3{blocks_for(chunks)},
                           dim3{flash::kBlock}, 0, row_dot.data(), dout.data(), out.data(), chunks,
                           T, C, NH, group);
  return row_dot;
}

std::vector<__nv_bfloat16> rounded_to_bf16(const Vec& x) {
  std::vector<__nv_bfloat16> rounded(x.size());
  for (size_t i = 0; i < x.size(); ++i) rounded[i] = __float2bfloat16(x[i]);
  return rounded;
}

void check_against_cpu(int B, int T, int C, int NH) {
  INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
  const AttentionReference want(B, T, C, NH);
  const int hs = C / NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const flash::Heads x{want.qkv.data(), T, C, hs};
  const dim3 rows{blocks_for(T, flash::kRows), static_cast<unsigned>(NH), static_cast<unsigned>(B)};
  const dim3 block{flash::kThreads};

  Vec out = random_vec(want.out.size(), 35);  // garbage the kernel must overwrite
  Vec lse(want.lse.size());
  ds_emulated_cuda::launch(flash::flash_forward_kernel, rows, block, 0, out.data(), lse.data(), x,
                           NH, scale);
  check_parity("flash forward out", out, want.out, 1e-4);
  check_parity("flash forward lse", lse, want.lse, 1e-4);

  Vec row_dot(lse.size());
  ds_emulated_cuda::launch(flash::row_dot_kernel<float>,
                           dim3{blocks_for(int64_t(row_dot.size()), flash::kRowsPerBlock)},
                           dim3{flash::kBlock}, 0, row_dot.data(), want.dout.data(),
                           static_cast<const float*>(out.data()), B, T, C, NH);
  check_parity("flash row_dot", row_dot, want.row_dot(out), 1e-6);
  check_parity("flash row_dot in chunks", chunked_row_dot(want.dout, out, B, T, C, NH),
               want.row_dot(out), 1e-6);
  // bf16 rows (the tensor-core attention's): in chunks as a warp per row sums them.
  const std::vector<__nv_bfloat16> dout16 = rounded_to_bf16(want.dout),
                                   out16 = rounded_to_bf16(out);
  Vec by_rows(row_dot.size());
  ds_emulated_cuda::launch(flash::row_dot_kernel<__nv_bfloat16>,
                           dim3{blocks_for(int64_t(row_dot.size()), flash::kRowsPerBlock)},
                           dim3{flash::kBlock}, 0, by_rows.data(), dout16.data(), out16.data(), B,
                           T, C, NH);
  check_parity("bf16 row_dot in chunks", chunked_row_dot(dout16, out16, B, T, C, NH), by_rows,
               1e-6);

  Vec dqkv = want.dqkv_start;
  const float* stats[] = {lse.data(), row_dot.data()};
  ds_emulated_cuda::launch(flash::flash_dq_kernel, rows, block, 0, dqkv.data(), want.dout.data(),
                           stats[0], stats[1], x, NH, scale);
  ds_emulated_cuda::launch(flash::flash_dkv_kernel, rows, block, 0, dqkv.data(), want.dout.data(),
                           stats[0], stats[1], x, NH, scale);
  check_parity("flash backward dqkv", dqkv, want.dqkv, 1e-4);
}

}  // namespace

// Head sizes 16, 64 and 128 (the most); T = 7, 65 and 100 end inside the 32-row tiles and the
// 8-row blocks.
TEST_CASE("emulated flash attention at head size 16", "[flash_attention]") {
  check_against_cpu(2, 7, 48, 3);
}
TEST_CASE("emulated flash attention at head size 64", "[flash_attention]") {
  check_against_cpu(2, 65, 192, 3);
}
TEST_CASE("emulated flash attention at head size 128", "[flash_attention]") {
  check_against_cpu(1, 100, 256, 2);
}
