// CPU kernels against naive double-precision references.
//
// Forwards: each output within 1e-5 + 1e-4·|expected| of the double reference (float rounding
// over sums of at most a few hundred terms, and fast_exp's ~1 ulp).
// Backwards: against central finite differences of the double reference forward (h = 1e-6,
// so the numerical gradient is good to ~1e-9), with loss = sum(out · g) for a random g; the
// float kernels must agree within 2e-5 + 1e-4·|expected|.
// Every backward starts from random gradient buffers and the test subtracts them, which checks
// that kernels accumulate (+=) instead of overwriting.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "tensor/cpu/kernels.h"

namespace cpu = ds::tensor::cpu;
using cpu::WeightLayout;

namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

Vec random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<int32_t> random_tokens(size_t n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

DVec to_double(const Vec& v) { return DVec(v.begin(), v.end()); }

void check_close(const std::string& what, const float* actual, const DVec& expected, double atol,
                 double rtol) {
  size_t bad = 0;
  size_t first = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double diff = std::abs(double(actual[i]) - expected[i]);
    if (!(diff <= atol + rtol * std::abs(expected[i]))) {
      if (bad++ == 0) first = i;
    }
  }
  INFO(what << ": " << bad << " of " << expected.size() << " differ; first at " << first << ": got "
            << (bad ? actual[first] : 0.0f) << ", want " << (bad ? expected[first] : 0.0));
  CHECK(bad == 0);
}

void check_forward(const std::string& what, const Vec& actual, const DVec& expected) {
  REQUIRE(actual.size() == expected.size());
  check_close(what, actual.data(), expected, 1e-5, 1e-4);
}

// The increment a backward added on top of the random starting values.
DVec added(const Vec& after, const Vec& before) {
  DVec d(after.size());
  for (size_t i = 0; i < after.size(); ++i) d[i] = double(after[i]) - double(before[i]);
  return d;
}

void check_grad(const std::string& what, const Vec& after, const Vec& before,
                const DVec& expected) {
  REQUIRE(after.size() == expected.size());
  const DVec got = added(after, before);
  size_t bad = 0;
  size_t first = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (!(std::abs(got[i] - expected[i]) <= 2e-5 + 1e-4 * std::abs(expected[i]))) {
      if (bad++ == 0) first = i;
    }
  }
  INFO(what << ": " << bad << " of " << expected.size() << " differ; first at " << first << ": got "
            << (bad ? got[first] : 0.0) << ", want " << (bad ? expected[first] : 0.0));
  CHECK(bad == 0);
}

// d/dx_i of sum(f(x) · g), by central differences in double.
DVec numeric_grad(const std::function<DVec(const DVec&)>& f, DVec x, const DVec& g) {
  const double h = 1e-6;
  DVec grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const DVec up = f(x);
    x[i] = keep - h;
    const DVec down = f(x);
    x[i] = keep;
    double s = 0.0;
    for (size_t j = 0; j < g.size(); ++j) s += (up[j] - down[j]) * g[j];
    grad[i] = s / (2 * h);
  }
  return grad;
}

// ---- double references ------------------------------------------------------------------

DVec ref_layernorm(const DVec& x, const DVec& w, const DVec& b, int N, int C, double eps,
                   DVec* mean = nullptr, DVec* rstd = nullptr) {
  DVec out(x.size());
  for (int n = 0; n < N; ++n) {
    double m = 0;
    for (int c = 0; c < C; ++c) m += x[n * C + c];
    m /= C;
    double v = 0;
    for (int c = 0; c < C; ++c) v += (x[n * C + c] - m) * (x[n * C + c] - m);
    v /= C;
    const double s = 1.0 / std::sqrt(v + eps);
    for (int c = 0; c < C; ++c) out[n * C + c] = (x[n * C + c] - m) * s * w[c] + b[c];
    if (mean) (*mean)[n] = m;
    if (rstd) (*rstd)[n] = s;
  }
  return out;
}

double weight_at(const DVec& w, int ic, int oc, int IC, int OC, WeightLayout layout) {
  return layout == WeightLayout::kInOut ? w[size_t(ic) * OC + oc] : w[size_t(oc) * IC + ic];
}

DVec ref_matmul(const DVec& x, const DVec& w, const DVec* bias, int N, int IC, int OC,
                WeightLayout layout) {
  DVec out(size_t(N) * OC);
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < OC; ++o) {
      double s = bias ? (*bias)[o] : 0.0;
      for (int i = 0; i < IC; ++i) s += x[size_t(n) * IC + i] * weight_at(w, i, o, IC, OC, layout);
      out[size_t(n) * OC + o] = s;
    }
  }
  return out;
}

DVec ref_attention(const DVec& qkv, int B, int T, int C, int NH, DVec* att = nullptr) {
  const int hs = C / NH;
  DVec out(size_t(B) * T * C, 0.0);
  if (att) att->assign(size_t(B) * NH * T * T, 0.0);
  const double scale = 1.0 / std::sqrt(double(hs));
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      for (int t = 0; t < T; ++t) {
        const double* q = &qkv[(size_t(b) * T + t) * 3 * C + h * hs];
        DVec s(t + 1);
        double m = -1e300;
        for (int j = 0; j <= t; ++j) {
          const double* k = &qkv[(size_t(b) * T + j) * 3 * C + C + h * hs];
          double d = 0;
          for (int i = 0; i < hs; ++i) d += q[i] * k[i];
          s[j] = d * scale;
          m = std::max(m, s[j]);
        }
        double sum = 0;
        for (int j = 0; j <= t; ++j) sum += (s[j] = std::exp(s[j] - m));
        for (int j = 0; j <= t; ++j) {
          const double p = s[j] / sum;
          if (att) (*att)[((size_t(b) * NH + h) * T + t) * T + j] = p;
          const double* v = &qkv[(size_t(b) * T + j) * 3 * C + 2 * C + h * hs];
          for (int i = 0; i < hs; ++i) out[(size_t(b) * T + t) * C + h * hs + i] += p * v[i];
        }
      }
    }
  }
  return out;
}

double ref_gelu(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

}  // namespace

TEST_CASE("encoder forward and backward", "[cpu_kernels]") {
  for (auto [B, T, C, V] : {std::tuple{2, 5, 19, 7}, {1, 1, 8, 3}, {3, 17, 40, 5}}) {
    CAPTURE(B, T, C, V);
    const Vec wte = random_vec(size_t(V) * C, 1);
    const Vec wpe = random_vec(size_t(T) * C, 2);
    const auto tokens = random_tokens(size_t(B) * T, V, 3);  // small V: repeated tokens
    Vec out(size_t(B) * T * C);
    cpu::encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    DVec want(out.size());
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t)
        for (int c = 0; c < C; ++c)
          want[(size_t(b) * T + t) * C + c] =
              double(wte[size_t(tokens[b * T + t]) * C + c]) + wpe[size_t(t) * C + c];
    check_forward("out", out, want);

    const Vec dout = random_vec(out.size(), 4);
    const Vec dwte0 = random_vec(wte.size(), 5);
    const Vec dwpe0 = random_vec(wpe.size(), 6);
    Vec dwte = dwte0, dwpe = dwpe0;
    cpu::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);
    DVec want_dwte(wte.size(), 0.0), want_dwpe(wpe.size(), 0.0);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t)
        for (int c = 0; c < C; ++c) {
          const double d = dout[(size_t(b) * T + t) * C + c];
          want_dwte[size_t(tokens[b * T + t]) * C + c] += d;
          want_dwpe[size_t(t) * C + c] += d;
        }
    check_grad("dwte", dwte, dwte0, want_dwte);
    check_grad("dwpe", dwpe, dwpe0, want_dwpe);
  }
}

TEST_CASE("layernorm forward and backward", "[cpu_kernels]") {
  for (auto [N, C] : {std::pair{1, 8}, {7, 13}, {33, 70}}) {
    CAPTURE(N, C);
    const float eps = 1e-5f;
    const Vec x = random_vec(size_t(N) * C, 10, -2.0f, 3.0f);
    const Vec w = random_vec(C, 11, 0.5f, 1.5f);
    const Vec b = random_vec(C, 12);
    Vec out(x.size()), mean(N), rstd(N);
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C,
                           eps);
    DVec want_mean(N), want_rstd(N);
    const DVec want =
        ref_layernorm(to_double(x), to_double(w), to_double(b), N, C, eps, &want_mean, &want_rstd);
    check_forward("out", out, want);
    check_forward("mean", mean, want_mean);
    check_forward("rstd", rstd, want_rstd);

    const Vec dout = random_vec(out.size(), 13);
    const DVec g = to_double(dout);
    const Vec dx0 = random_vec(x.size(), 14), dw0 = random_vec(C, 15), db0 = random_vec(C, 16);
    Vec dx = dx0, dw = dw0, db = db0;
    cpu::layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                            mean.data(), rstd.data(), N, C);
    const DVec xd = to_double(x), wd = to_double(w), bd = to_double(b);
    check_grad(
        "dinp", dx, dx0,
        numeric_grad([&](const DVec& v) { return ref_layernorm(v, wd, bd, N, C, eps); }, xd, g));
    check_grad(
        "dweight", dw, dw0,
        numeric_grad([&](const DVec& v) { return ref_layernorm(xd, v, bd, N, C, eps); }, wd, g));
    check_grad(
        "dbias", db, db0,
        numeric_grad([&](const DVec& v) { return ref_layernorm(xd, wd, v, N, C, eps); }, bd, g));
  }
}

TEST_CASE("matmul forward and backward in both weight layouts", "[cpu_kernels]") {
  for (auto layout : {WeightLayout::kInOut, WeightLayout::kOutIn}) {
    for (auto [N, IC, OC, with_bias] :
         {std::tuple{5, 7, 9, true}, {1, 16, 3, false}, {37, 24, 41, true}}) {
      CAPTURE(int(layout), N, IC, OC, with_bias);
      const Vec x = random_vec(size_t(N) * IC, 20);
      const Vec w = random_vec(size_t(IC) * OC, 21);
      const Vec bias = random_vec(OC, 22);
      const DVec xd = to_double(x), wd = to_double(w), bd = to_double(bias);
      Vec out = random_vec(size_t(N) * OC, 23);  // garbage: forward must overwrite
      cpu::matmul_forward(out.data(), x.data(), w.data(), with_bias ? bias.data() : nullptr, N, IC,
                          OC, layout);
      check_forward("out", out, ref_matmul(xd, wd, with_bias ? &bd : nullptr, N, IC, OC, layout));

      const Vec dout = random_vec(out.size(), 24);
      const DVec g = to_double(dout);
      const Vec dx0 = random_vec(x.size(), 25), dw0 = random_vec(w.size(), 26),
                db0 = random_vec(OC, 27);
      Vec dx = dx0, dw = dw0, db = db0;
      cpu::matmul_backward(dx.data(), dw.data(), with_bias ? db.data() : nullptr, dout.data(),
                           x.data(), w.data(), N, IC, OC, layout);
      const DVec* bp = with_bias ? &bd : nullptr;
      check_grad(
          "dinp", dx, dx0,
          numeric_grad([&](const DVec& v) { return ref_matmul(v, wd, bp, N, IC, OC, layout); }, xd,
                       g));
      check_grad(
          "dweight", dw, dw0,
          numeric_grad([&](const DVec& v) { return ref_matmul(xd, v, bp, N, IC, OC, layout); }, wd,
                       g));
      if (with_bias) {
        check_grad(
            "dbias", db, db0,
            numeric_grad([&](const DVec& v) { return ref_matmul(xd, wd, &v, N, IC, OC, layout); },
                         bd, g));
      } else {
        CHECK(db == db0);
      }

      // The first layer passes no input gradient.
      Vec dw2 = dw0;
      cpu::matmul_backward(nullptr, dw2.data(), nullptr, dout.data(), x.data(), w.data(), N, IC, OC,
                           layout);
      check_grad("dweight without dinp", dw2, dw0, added(dw, dw0));
    }
  }
}

TEST_CASE("attention forward and backward", "[cpu_kernels]") {
  // T=70 and T=130 cross the kernel's 64-row blocks; T=1 is a single token.
  for (auto [B, T, C, NH] :
       {std::tuple{2, 5, 12, 3}, {1, 1, 8, 2}, {1, 70, 16, 2}, {2, 130, 8, 1}}) {
    CAPTURE(B, T, C, NH);
    const Vec qkv = random_vec(size_t(B) * T * 3 * C, 30, -2.0f, 2.0f);
    const DVec qd = to_double(qkv);
    Vec out(size_t(B) * T * C);
    Vec att = random_vec(size_t(B) * NH * T * T, 31);  // garbage above the diagonal too
    cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    DVec want_att;
    const DVec want = ref_attention(qd, B, T, C, NH, &want_att);
    check_forward("out", out, want);
    check_forward("att", att, want_att);

    const Vec dout = random_vec(out.size(), 32);
    const DVec g = to_double(dout);
    const Vec dqkv0 = random_vec(qkv.size(), 33);
    Vec dqkv = dqkv0;
    Vec scratch(att.size());
    cpu::attention_backward(dqkv.data(), scratch.data(), dout.data(), qkv.data(), att.data(), B, T,
                            C, NH);
    // Finite differences for every input on the small shapes, a sample of 150 on the large.
    const auto f = [&](const DVec& v) { return ref_attention(v, B, T, C, NH); };
    if (qkv.size() <= 400) {
      check_grad("dqkv", dqkv, dqkv0, numeric_grad(f, qd, g));
    } else {
      const DVec got = added(dqkv, dqkv0);
      std::mt19937 rng(34);
      std::uniform_int_distribution<size_t> pick(0, qkv.size() - 1);
      DVec x = qd;
      size_t bad = 0;
      for (int s = 0; s < 150; ++s) {
        const size_t i = pick(rng);
        const double h = 1e-6;
        x[i] = qd[i] + h;
        const DVec up = f(x);
        x[i] = qd[i] - h;
        const DVec down = f(x);
        x[i] = qd[i];
        double want_i = 0;
        for (size_t j = 0; j < g.size(); ++j) want_i += (up[j] - down[j]) * g[j];
        want_i /= 2 * h;
        if (!(std::abs(got[i] - want_i) <= 2e-5 + 1e-4 * std::abs(want_i))) {
          UNSCOPED_INFO("dqkv[" << i << "]: got " << got[i] << ", want " << want_i);
          ++bad;
        }
      }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("gelu matches the tanh approximation, forward and backward", "[cpu_kernels]") {
  for (int64_t N : {1, 7, 1000, 40000}) {  // 40000 takes the parallel path
    CAPTURE(N);
    Vec x = random_vec(size_t(N), 40, -6.0f, 6.0f);
    if (N >= 4) x[0] = -20.0f, x[1] = 20.0f, x[2] = 0.0f, x[3] = 1e-4f;
    Vec out(x.size());
    cpu::gelu_forward(out.data(), x.data(), N);
    DVec want(x.size());
    for (size_t i = 0; i < x.size(); ++i) want[i] = ref_gelu(x[i]);
    check_forward("out", out, want);

    const Vec dout = random_vec(x.size(), 41);
    const Vec dx0 = random_vec(x.size(), 42);
    Vec dx = dx0;
    cpu::gelu_backward(dx.data(), x.data(), dout.data(), N);
    DVec want_dx(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double h = 1e-6;
      want_dx[i] = (ref_gelu(double(x[i]) + h) - ref_gelu(double(x[i]) - h)) / (2 * h) * dout[i];
    }
    check_grad("dinp", dx, dx0, want_dx);

    Vec inplace = x;
    cpu::gelu_forward(inplace.data(), inplace.data(), N);
    CHECK(inplace == out);

    // Written over the output gradient: what the accumulating form adds to zeros.
    Vec from_zero(x.size(), 0.0f), over = dout;
    cpu::gelu_backward(from_zero.data(), x.data(), dout.data(), N);
    cpu::gelu_backward_inplace(over.data(), x.data(), N);
    CHECK(over == from_zero);
  }
}

TEST_CASE("element-wise helpers", "[cpu_kernels]") {
  for (int64_t N : {1, 13, 50001}) {
    CAPTURE(N);
    const Vec a = random_vec(size_t(N), 50), b = random_vec(size_t(N), 51);
    Vec out(a.size());
    cpu::residual_forward(out.data(), a.data(), b.data(), N);
    DVec want(a.size());
    for (size_t i = 0; i < a.size(); ++i) want[i] = double(a[i]) + b[i];
    check_forward("residual", out, want);

    Vec dst = a;
    cpu::add_inplace(dst.data(), b.data(), N);
    CHECK(dst == out);

    double ss = 0;
    for (float v : a) ss += double(v) * v;
    CHECK(cpu::sum_of_squares(a.data(), N) == Approx(ss).epsilon(1e-12));

    Vec s = a;
    cpu::scale_inplace(s.data(), 0.25f, N);
    for (size_t i = 0; i < a.size(); ++i) REQUIRE(s[i] == a[i] * 0.25f);
  }
}

TEST_CASE("softmax cross-entropy forward and backward", "[cpu_kernels]") {
  for (auto [N, V, offset] :
       {std::tuple{1, 1, 0.0f}, {6, 11, 0.0f}, {9, 257, 50.0f}, {2, 50257, 1000.0f}}) {
    CAPTURE(N, V, offset);
    // A large common offset checks that the maximum is subtracted before exp.
    const Vec logits = random_vec(size_t(N) * V, 60, offset - 8.0f, offset + 8.0f);
    const auto targets = random_tokens(size_t(N), V, 61);
    Vec losses(N), probs(logits.size());
    cpu::softmax_cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(),
                                       N, V);
    DVec want_loss(N), want_probs(logits.size());
    for (int n = 0; n < N; ++n) {
      double m = -1e300;
      for (int i = 0; i < V; ++i) m = std::max(m, double(logits[size_t(n) * V + i]));
      double sum = 0;
      for (int i = 0; i < V; ++i) sum += std::exp(double(logits[size_t(n) * V + i]) - m);
      for (int i = 0; i < V; ++i)
        want_probs[size_t(n) * V + i] = std::exp(double(logits[size_t(n) * V + i]) - m) / sum;
      want_loss[n] = std::log(sum) + m - logits[size_t(n) * V + targets[n]];
    }
    check_forward("losses", losses, want_loss);
    check_close("probs", probs.data(), want_probs, 1e-7, 1e-4);

    // probs may alias logits.
    Vec inplace = logits;
    Vec losses2(N);
    cpu::softmax_cross_entropy_forward(losses2.data(), inplace.data(), inplace.data(),
                                       targets.data(), N, V);
    CHECK(losses2 == losses);
    CHECK(inplace == probs);

    // Backward writes (does not accumulate) dlogits = (p - onehot) * dloss, checked against the
    // derivative of sum(losses) * dloss by finite differences on the smaller shapes.
    const float dloss = 1.0f / (N * 3);
    Vec dlogits = random_vec(logits.size(), 62);
    cpu::softmax_cross_entropy_backward(dlogits.data(), probs.data(), targets.data(), dloss, N, V);
    DVec want_d(logits.size());
    if (V <= 257) {
      const auto f = [&](const DVec& v) {
        DVec l(N);
        for (int n = 0; n < N; ++n) {
          double m = -1e300, sum = 0;
          for (int i = 0; i < V; ++i) m = std::max(m, v[size_t(n) * V + i]);
          for (int i = 0; i < V; ++i) sum += std::exp(v[size_t(n) * V + i] - m);
          l[n] = std::log(sum) + m - v[size_t(n) * V + targets[n]];
        }
        return l;
      };
      want_d = numeric_grad(f, to_double(logits), DVec(N, double(dloss)));
    } else {
      for (size_t i = 0; i < want_d.size(); ++i) want_d[i] = want_probs[i] * dloss;
      for (int n = 0; n < N; ++n) want_d[size_t(n) * V + targets[n]] -= dloss;
    }
    check_close("dlogits", dlogits.data(), want_d, 1e-7, 1e-4);

    Vec in_place = probs;
    cpu::softmax_cross_entropy_backward(in_place.data(), in_place.data(), targets.data(), dloss, N,
                                        V);
    CHECK(in_place == dlogits);

    // The fused form gives both results bit for bit, over the logits in place too.
    Vec fused_losses(N), fused = logits;
    cpu::softmax_cross_entropy_fused(fused_losses.data(), fused.data(), fused.data(),
                                     targets.data(), dloss, N, V);
    CHECK(fused_losses == losses);
    CHECK(fused == dlogits);
  }
}

TEST_CASE("fused softmax cross-entropy zeroes ignored rows", "[cpu_kernels]") {
  const int N = 3, V = 7;
  const Vec logits = random_vec(size_t(N) * V, 63);
  auto targets = random_tokens(size_t(N), V, 64);
  targets[1] = cpu::kIgnoreTarget;
  Vec losses(N), dlogits(logits.size(), 5.0f);
  cpu::softmax_cross_entropy_fused(losses.data(), dlogits.data(), logits.data(), targets.data(),
                                   0.25f, N, V);
  CHECK(losses[1] == 0.0f);
  for (int v = 0; v < V; ++v) CHECK(dlogits[size_t(V) + v] == 0.0f);
  float row_sum = 0;  // (p - onehot) * dloss sums to 0 over a counted row
  for (int v = 0; v < V; ++v) row_sum += dlogits[v];
  CHECK(std::fabs(row_sum) < 1e-6f);
}

TEST_CASE("reductions are deterministic and race-free across thread counts", "[cpu_kernels]") {
  const int B = 2, T = 96, C = 64, NH = 4, V = 5;
  const Vec qkv = random_vec(size_t(B) * T * 3 * C, 70);
  const Vec dout = random_vec(size_t(B) * T * C, 71);
  const auto tokens = random_tokens(size_t(B) * T, V, 72);
  const Vec x = random_vec(size_t(B) * T * C, 73);
  const Vec w = random_vec(C, 74);
  const int saved_threads = omp_get_max_threads();

  const auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Vec out(size_t(B) * T * C), att(size_t(B) * NH * T * T), scratch(att.size());
    Vec dqkv(qkv.size(), 0.0f);
    cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    cpu::attention_backward(dqkv.data(), scratch.data(), dout.data(), qkv.data(), att.data(), B, T,
                            C, NH);
    Vec dwte(size_t(V) * C, 0.0f), dwpe(size_t(T) * C, 0.0f);
    cpu::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);
    Vec y(x.size()), mean(B * T), rstd(B * T), dx(x.size(), 0.0f), dw(C, 0.0f), db(C, 0.0f);
    cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), w.data(), B * T,
                           C, 1e-5f);
    cpu::layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                            mean.data(), rstd.data(), B * T, C);
    std::vector<Vec> results{out, dqkv, dwte, dwpe, dx, dw, db};
    return results;
  };
  const auto first = run(saved_threads);
  const auto again = run(saved_threads);
  for (size_t i = 0; i < first.size(); ++i) {
    CAPTURE(i);
    CHECK(std::memcmp(first[i].data(), again[i].data(), first[i].size() * sizeof(float)) == 0);
  }
  // The channel-split reductions do not depend on the thread count at all.
  const auto three = run(3);
  for (size_t i : {2, 3, 5, 6}) {
    CAPTURE(i);
    CHECK(std::memcmp(first[i].data(), three[i].data(), first[i].size() * sizeof(float)) == 0);
  }
  omp_set_num_threads(saved_threads);
  const Vec big = random_vec(1 << 20, 75);
  CHECK(cpu::sum_of_squares(big.data(), int64_t(big.size())) ==
        cpu::sum_of_squares(big.data(), int64_t(big.size())));
}
