#include "tensor/cpu/kernels.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "tensor/cpu/kernel_helpers.h"
#include "util/error.h"

namespace ds::tensor::cpu {
namespace {

using namespace detail;

// tanh through exp: 1 - 2/(1 + e^{2u}). Accurate in absolute terms (~1e-7), which is what GELU
// needs since it uses 1 + tanh.
inline float fast_tanh(float u) { return 1.0f - 2.0f / (1.0f + fast_exp(2.0f * u)); }

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;

inline float lane_max(const float* x, int64_t n) {
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] = std::max(acc[l], x[i + l]);
  }
  float m = x[0];
  for (; i < n; ++i) m = std::max(m, x[i]);
  for (int l = 0; l < kLanes; ++l) m = std::max(m, acc[l]);
  return m;
}

void sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha, const float* a,
           int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Attention works on row blocks of this many queries: a block needs scores only up to its last
// row, so causal masking skips most of the upper triangle while the sgemms stay large.
constexpr int kAttentionBlock = 64;

}  // namespace

void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                     int T, int C) {
  for (int64_t i = 0; i < int64_t{B} * T; ++i) {
    DS_CHECK(tokens[i] >= 0, "negative token {} at position {}", tokens[i], i);
  }
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * T; ++bt) {
    const int t = bt % T;
    float* o = out + size_t(bt) * C;
    const float* e = wte + size_t(tokens[bt]) * C;
    if (wpe == nullptr) {
      std::memcpy(o, e, sizeof(float) * C);
      continue;
    }
    const float* p = wpe + size_t(t) * C;
#pragma omp simd
    for (int c = 0; c < C; ++c) o[c] = e[c] + p[c];
  }
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                      int T, int C) {
#pragma omp parallel
  {
    const Range share = column_share(C, omp_get_thread_num(), omp_get_num_threads());
    for (int b = 0; b < B; ++b) {
      for (int t = 0; t < T; ++t) {
        const float* d = dout + (size_t(b) * T + t) * C;
        float* we = dwte + size_t(tokens[size_t(b) * T + t]) * C;
#pragma omp simd
        for (int c = share.begin; c < share.end; ++c) we[c] += d[c];
        if (dwpe == nullptr) continue;
        float* wp = dwpe + size_t(t) * C;
#pragma omp simd
        for (int c = share.begin; c < share.end; ++c) wp[c] += d[c];
      }
    }
  }
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* x = inp + size_t(n) * C;
    float* o = out + size_t(n) * C;
    const float m = lane_sum<float>(C, [&](int64_t c) { return x[c]; }) / C;
    // Two passes: the variance from squares of deviations, not E[x^2] - m^2, which cancels.
    const float var = lane_sum<float>(C, [&](int64_t c) { return (x[c] - m) * (x[c] - m); });
    const float s = 1.0f / std::sqrt(var / C + eps);
#pragma omp simd
    for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * weight[c] + bias[c];
    if (mean != nullptr) mean[n] = m;
    if (rstd != nullptr) rstd[n] = s;
  }
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int N, int C) {
#pragma omp parallel
  {
    // Input gradient, row by row.
#pragma omp for schedule(static) nowait
    for (int n = 0; n < N; ++n) {
      const float* x = inp + size_t(n) * C;
      const float* d = dout + size_t(n) * C;
      float* di = dinp + size_t(n) * C;
      const float m = mean[n];
      const float s = rstd[n];
      const float dnorm_mean = lane_sum<float>(C, [&](int64_t c) { return weight[c] * d[c]; }) / C;
      const float dnorm_norm_mean =
          lane_sum<float>(C, [&](int64_t c) { return weight[c] * d[c] * (x[c] - m) * s; }) / C;
#pragma omp simd
      for (int c = 0; c < C; ++c) {
        const float norm = (x[c] - m) * s;
        di[c] += (weight[c] * d[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
      }
    }
    // Parameter gradients sum over rows; each thread owns a slice of the channels and adds the
    // rows in order, so the sums are race-free and independent of the thread count.
    const Range share = column_share(C, omp_get_thread_num(), omp_get_num_threads());
    for (int n = 0; n < N; ++n) {
      const float* x = inp + size_t(n) * C;
      const float* d = dout + size_t(n) * C;
      const float m = mean[n];
      const float s = rstd[n];
#pragma omp simd
      for (int c = share.begin; c < share.end; ++c) {
        dweight[c] += d[c] * (x[c] - m) * s;
        dbias[c] += d[c];
      }
    }
  }
}

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int IC, int OC, WeightLayout layout) {
  float beta = 0.0f;
  if (bias != nullptr) {
    // Start from the bias and let sgemm add to it: one pass over out instead of two.
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) std::memcpy(out + size_t(n) * OC, bias, sizeof(float) * OC);
    beta = 1.0f;
  }
  if (layout == WeightLayout::kInOut) {
    sgemm(CblasNoTrans, CblasNoTrans, N, OC, IC, 1.0f, inp, IC, weight, OC, beta, out, OC);
  } else {
    sgemm(CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, weight, IC, beta, out, OC);
  }
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int IC, int OC, WeightLayout layout) {
  if (layout == WeightLayout::kInOut) {
    if (dinp != nullptr) {
      sgemm(CblasNoTrans, CblasTrans, N, IC, OC, 1.0f, dout, OC, weight, OC, 1.0f, dinp, IC);
    }
    sgemm(CblasTrans, CblasNoTrans, IC, OC, N, 1.0f, inp, IC, dout, OC, 1.0f, dweight, OC);
  } else {
    if (dinp != nullptr) {
      sgemm(CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, weight, IC, 1.0f, dinp, IC);
    }
    sgemm(CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
  }
  if (dbias != nullptr) {
#pragma omp parallel
    {
      const Range share = column_share(OC, omp_get_thread_num(), omp_get_num_threads());
      for (int n = 0; n < N; ++n) {
        const float* d = dout + size_t(n) * OC;
#pragma omp simd
        for (int c = share.begin; c < share.end; ++c) dbias[c] += d[c];
      }
    }
  }
}

void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
  DS_CHECK(NH > 0 && C % NH == 0, "{} channels do not split into {} heads", C, NH);
  const int hs = C / NH;
  const int C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int blocks = (T + kAttentionBlock - 1) / kAttentionBlock;
  // Tasks are (batch, head, row block): each writes its own rows of att and out. Inside the
  // parallel region OpenBLAS runs single-threaded, so the pool is not oversubscribed.
#pragma omp parallel for schedule(static)
  for (int task = 0; task < B * NH * blocks; ++task) {
    const int b = task / (NH * blocks);
    const int h = (task / blocks) % NH;
    const int r0 = (task % blocks) * kAttentionBlock;
    const int r1 = std::min(T, r0 + kAttentionBlock);
    const float* q = qkv + size_t(b) * T * C3 + size_t(h) * hs;
    const float* k = q + C;
    const float* v = q + 2 * C;
    float* a = att + (size_t(b) * NH + h) * T * T;
    // Scores of rows [r0, r1) against keys [0, r1), already scaled.
    sgemm(CblasNoTrans, CblasTrans, r1 - r0, r1, hs, scale, q + size_t(r0) * C3, C3, k, C3, 0.0f,
          a + size_t(r0) * T, T);
    for (int t = r0; t < r1; ++t) {
      float* row = a + size_t(t) * T;
      const float maxv = lane_max(row, t + 1);
      const float sum = lane_sum<float>(t + 1, [&](int64_t j) {
        const float e = fast_exp(row[j] - maxv);
        row[j] = e;
        return e;
      });
      const float inv = 1.0f / sum;
#pragma omp simd
      for (int j = 0; j <= t; ++j) row[j] *= inv;
      std::fill(row + t + 1, row + T, 0.0f);
    }
    sgemm(CblasNoTrans, CblasNoTrans, r1 - r0, hs, r1, 1.0f, a + size_t(r0) * T, T, v, C3, 0.0f,
          out + (size_t(b) * T + r0) * C + size_t(h) * hs, C);
  }
}

void attention_backward(float* dqkv, float* datt_scratch, const float* dout, const float* qkv,
                        const float* att, int B, int T, int C, int NH) {
  DS_CHECK(NH > 0 && C % NH == 0, "{} channels do not split into {} heads", C, NH);
  const int hs = C / NH;
  const int C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  // One task per (batch, head): dK and dV collect contributions from every row block, so the
  // blocks of a head run in order on one thread.
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; ++bh) {
    const int b = bh / NH;
    const int h = bh % NH;
    const size_t head = size_t(b) * T * C3 + size_t(h) * hs;
    const float* q = qkv + head;
    const float* k = q + C;
    const float* v = q + 2 * C;
    float* dq = dqkv + head;
    float* dk = dq + C;
    float* dv = dq + 2 * C;
    const float* a = att + size_t(bh) * T * T;
    float* da = datt_scratch + size_t(bh) * T * T;
    const float* d = dout + size_t(b) * T * C + size_t(h) * hs;
    for (int r0 = 0; r0 < T; r0 += kAttentionBlock) {
      const int r1 = std::min(T, r0 + kAttentionBlock);
      const int rows = r1 - r0;
      // dP = dO V^T over keys [0, r1).
      sgemm(CblasNoTrans, CblasTrans, rows, r1, hs, 1.0f, d + size_t(r0) * C, C, v, C3, 0.0f,
            da + size_t(r0) * T, T);
      // Softmax backward: dS = P * (dP - sum_j P dP); zero above the diagonal.
      for (int t = r0; t < r1; ++t) {
        const float* p = a + size_t(t) * T;
        float* g = da + size_t(t) * T;
        const float dot = lane_sum<float>(t + 1, [&](int64_t j) { return p[j] * g[j]; });
#pragma omp simd
        for (int j = 0; j <= t; ++j) g[j] = p[j] * (g[j] - dot);
        std::fill(g + t + 1, g + r1, 0.0f);
      }
      const float* ds = da + size_t(r0) * T;
      // dQ[r0:r1] += scale dS K;  dK[0:r1] += scale dS^T Q[r0:r1];  dV[0:r1] += P^T dO[r0:r1].
      sgemm(CblasNoTrans, CblasNoTrans, rows, hs, r1, scale, ds, T, k, C3, 1.0f,
            dq + size_t(r0) * C3, C3);
      sgemm(CblasTrans, CblasNoTrans, r1, hs, rows, scale, ds, T, q + size_t(r0) * C3, C3, 1.0f, dk,
            C3);
      sgemm(CblasTrans, CblasNoTrans, r1, hs, rows, 1.0f, a + size_t(r0) * T, T, d + size_t(r0) * C,
            C, 1.0f, dv, C3);
    }
  }
}

void gelu_forward(float* out, const float* inp, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float x = inp[i];
    const float u = kGeluScale * (x + kGeluCubic * x * x * x);
    out[i] = 0.5f * x * (1.0f + fast_tanh(u));
  }
}

namespace {

#pragma omp declare simd
inline float gelu_grad(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  const float th = fast_tanh(u);
  const float du = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

}  // namespace

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) dinp[i] += gelu_grad(inp[i]) * dout[i];
}

void gelu_backward_inplace(float* d, const float* inp, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) d[i] = gelu_grad(inp[i]) * d[i];
}

void residual_forward(float* out, const float* a, const float* b, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) out[i] = a[i] + b[i];
}

void add_inplace(float* dst, const float* src, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) dst[i] += src[i];
}

namespace {

// softmax_cross_entropy_forward, and with kGradient the fused form: each row's gradient written
// where its probabilities would be, with the backward's own roundings (p * dloss, then the
// one-hot subtracted), so that both forms give the same bits.
template <bool kGradient>
void cross_entropy_rows(float* losses, float* out, const float* logits, const int32_t* targets,
                        float dloss, int N, int V) {
  for (int n = 0; n < N; ++n) {
    DS_CHECK((targets[n] >= 0 && targets[n] < V) || targets[n] == kIgnoreTarget,
             "target {} at position {} is outside [0, {})", targets[n], n, V);
  }
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* x = logits + size_t(n) * V;
    float* p = out + size_t(n) * V;
    // Read before p (which may be x) is overwritten.
    const bool ignored = targets[n] == kIgnoreTarget;
    const float target_logit = ignored ? 0.0f : x[targets[n]];
    const float maxv = lane_max(x, V);
    // The sum is kept in double: GPT-2 rows have 50257 terms.
    const double sum = lane_sum<double>(V, [&](int64_t i) {
      const float e = fast_exp(x[i] - maxv);
      p[i] = e;
      return double(e);
    });
    const float inv = static_cast<float>(1.0 / sum);
    if constexpr (kGradient) {
      if (ignored) {
        std::memset(p, 0, sizeof(float) * V);
      } else {
#pragma omp simd
        for (int i = 0; i < V; ++i) p[i] = (p[i] * inv) * dloss;
        p[targets[n]] -= dloss;
      }
    } else {
#pragma omp simd
      for (int i = 0; i < V; ++i) p[i] *= inv;
    }
    losses[n] =
        ignored ? 0.0f : static_cast<float>(std::log(sum) + double(maxv) - double(target_logit));
  }
}

}  // namespace

void softmax_cross_entropy_forward(float* losses, float* probs, const float* logits,
                                   const int32_t* targets, int N, int V) {
  cross_entropy_rows<false>(losses, probs, logits, targets, 0.0f, N, V);
}

void softmax_cross_entropy_fused(float* losses, float* dlogits, const float* logits,
                                 const int32_t* targets, float dloss, int N, int V) {
  cross_entropy_rows<true>(losses, dlogits, logits, targets, dloss, N, V);
}

void softmax_cross_entropy_backward(float* dlogits, const float* probs, const int32_t* targets,
                                    float dloss, int N, int V) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* p = probs + size_t(n) * V;
    float* d = dlogits + size_t(n) * V;
    if (targets[n] == kIgnoreTarget) {
      std::memset(d, 0, sizeof(float) * V);
      continue;
    }
#pragma omp simd
    for (int i = 0; i < V; ++i) d[i] = p[i] * dloss;
    d[targets[n]] -= dloss;
  }
}

void fill_zero(float* x, int64_t N) { std::memset(x, 0, sizeof(float) * static_cast<size_t>(N)); }

namespace {

// Σ value(i)² in double for i in [0, N).
template <typename Value>
double sum_of_squares_of(int64_t N, Value value) {
  // Per-thread partials added in thread order: a float-atomic or omp reduction would make the
  // gradient norm (and so clipping) differ from run to run.
  constexpr int kMaxThreads = 256;
  double partial[kMaxThreads] = {};
  const int wanted = N >= kParallelMin ? std::min(omp_get_max_threads(), kMaxThreads) : 1;
  int used = 1;
#pragma omp parallel num_threads(wanted)
  {
    const int threads = omp_get_num_threads();
    const int id = omp_get_thread_num();
    const int64_t begin = N * id / threads;
    const int64_t end = N * (id + 1) / threads;
    partial[id] = lane_sum<double>(end - begin, [&](int64_t i) {
      const float v = value(begin + i);
      return double(v) * v;
    });
    if (id == 0) used = threads;
  }
  double total = 0.0;
  for (int i = 0; i < used; ++i) total += partial[i];
  return total;
}

}  // namespace

double sum_of_squares(const float* x, int64_t N) {
  return sum_of_squares_of(N, [x](int64_t i) { return x[i]; });
}

double sum_of_squares(const void* x, DType dtype, int64_t N) {
  const auto* bits = static_cast<const uint16_t*>(x);
  switch (dtype) {
    case DType::kBF16:
      return sum_of_squares_of(N, [bits](int64_t i) { return bf16_to_f32(bits[i]); });
    case DType::kF16:
      return sum_of_squares_of(N, [bits](int64_t i) { return f16_to_f32(bits[i]); });
    case DType::kF32:
      break;
  }
  return sum_of_squares(static_cast<const float*>(x), N);
}

void scale_inplace(float* x, float scale, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) x[i] *= scale;
}

}  // namespace ds::tensor::cpu
