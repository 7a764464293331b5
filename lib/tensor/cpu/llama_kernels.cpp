#include "tensor/cpu/llama_kernels.h"

#include <omp.h>

#include <cmath>
#include <cstring>

#include "tensor/cpu/kernel_helpers.h"

namespace ds::tensor::cpu {

using detail::column_share;
using detail::fast_exp;
using detail::kParallelMin;
using detail::lane_sum;

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* x = inp + size_t(n) * C;
    float* y = out + size_t(n) * C;
    const float ms = lane_sum<float>(C, [&](int64_t c) { return x[c] * x[c]; }) / C;
    const float s = 1.0f / std::sqrt(ms + eps);
#pragma omp simd
    for (int c = 0; c < C; ++c) y[c] = x[c] * s * weight[c];
    if (rstd != nullptr) rstd[n] = s;
  }
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C) {
#pragma omp parallel
  {
#pragma omp for schedule(static) nowait
    for (int n = 0; n < N; ++n) {
      const float* x = inp + size_t(n) * C;
      const float* d = dout + size_t(n) * C;
      float* di = dinp + size_t(n) * C;
      const float s = rstd[n];
      // y = xhat * w with xhat = x s: dxhat = d w; dx = s (dxhat - xhat mean(dxhat xhat)).
      const float dot =
          lane_sum<float>(C, [&](int64_t c) { return d[c] * weight[c] * x[c] * s; }) / C;
#pragma omp simd
      for (int c = 0; c < C; ++c) di[c] += s * (d[c] * weight[c] - x[c] * s * dot);
    }
    const auto share = column_share(C, omp_get_thread_num(), omp_get_num_threads());
    for (int n = 0; n < N; ++n) {
      const float* x = inp + size_t(n) * C;
      const float* d = dout + size_t(n) * C;
      const float s = rstd[n];
#pragma omp simd
      for (int c = share.begin; c < share.end; ++c) dweight[c] += d[c] * x[c] * s;
    }
  }
}

namespace {

// Rotates (sign = +1) or rotates back (sign = -1, the transpose) every head of every row.
void rotate(float* x, const float* cos, const float* sin, int N, int T, int heads, int hs,
            int64_t stride, float sign) {
  const int half = hs / 2;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* c = cos + int64_t{n % T} * half;
    const float* s = sin + int64_t{n % T} * half;
    for (int h = 0; h < heads; ++h) {
      float* a = x + n * stride + int64_t{h} * hs;
      float* b = a + half;
#pragma omp simd
      for (int i = 0; i < half; ++i) {
        const float ai = a[i], bi = b[i], si = sign * s[i];
        a[i] = ai * c[i] - bi * si;
        b[i] = bi * c[i] + ai * si;
      }
    }
  }
}

}  // namespace

void rope_forward(float* x, const float* cos, const float* sin, int N, int T, int heads, int hs,
                  int64_t stride) {
  rotate(x, cos, sin, N, T, heads, hs, stride, 1.0f);
}

void rope_backward(float* dx, const float* cos, const float* sin, int N, int T, int heads, int hs,
                   int64_t stride) {
  rotate(dx, cos, sin, N, T, heads, hs, stride, -1.0f);
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + fast_exp(-g)) * up[i];
  }
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float g = gate[i], d = dout[i];
    const float sig = 1.0f / (1.0f + fast_exp(-g));
    const float silu = g * sig;
    dup[i] = d * silu;
    dgate[i] = d * up[i] * sig * (1.0f + g * (1.0f - sig));
  }
}

void expand_kv_heads(float* qkv, const float* q, const float* k, const float* v, int N, int NH,
                     int KVH, int hs) {
  const int64_t C = int64_t{NH} * hs, KV = int64_t{KVH} * hs;
  const int group = NH / KVH;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    float* row = qkv + int64_t{n} * 3 * C;
    std::memcpy(row, q + n * C, sizeof(float) * C);
    for (int h = 0; h < NH; ++h) {
      const int64_t from = n * KV + int64_t{h / group} * hs;
      std::memcpy(row + C + int64_t{h} * hs, k + from, sizeof(float) * hs);
      std::memcpy(row + 2 * C + int64_t{h} * hs, v + from, sizeof(float) * hs);
    }
  }
}

void reduce_kv_heads(float* dq, float* dk, float* dv, const float* dqkv, int N, int NH, int KVH,
                     int hs) {
  const int64_t C = int64_t{NH} * hs, KV = int64_t{KVH} * hs;
  const int group = NH / KVH;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* row = dqkv + int64_t{n} * 3 * C;
    std::memcpy(dq + n * C, row, sizeof(float) * C);
    for (int kvh = 0; kvh < KVH; ++kvh) {
      float* k_out = dk + n * KV + int64_t{kvh} * hs;
      float* v_out = dv + n * KV + int64_t{kvh} * hs;
      std::memset(k_out, 0, sizeof(float) * hs);
      std::memset(v_out, 0, sizeof(float) * hs);
      for (int h = kvh * group; h < (kvh + 1) * group; ++h) {  // in head order
        const float* k_in = row + C + int64_t{h} * hs;
        const float* v_in = row + 2 * C + int64_t{h} * hs;
        for (int i = 0; i < hs; ++i) {
          k_out[i] += k_in[i];
          v_out[i] += v_in[i];
        }
      }
    }
  }
}

}  // namespace ds::tensor::cpu
