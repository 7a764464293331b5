// The CPU attention kernels on random inputs, for the parity tests of the flash-style kernels
// (cuda and emulated): the forward's output, each row's log-sum-exp (which those kernels keep
// instead of the probabilities), and dqkv accumulated onto a random start, as every attention
// backward accumulates.
#pragma once

#include <cmath>
#include <cstddef>

#include "parity_helpers.h"
#include "tensor/cpu/kernels.h"

namespace ds_parity_test {

// What rounding Q, K, V, dout, the probabilities and their gradients to bf16 (8 significant
// bits) may cost the tensor-core kernels (tensor_core_attention.h) against the fp32 CPU kernels,
// by normalised error: about 4x what the emulated kernels show (at most 2.6e-3, 4.2e-4 and
// 2.0e-3 over that test's shapes).
constexpr double kTensorCoreOutError = 1e-2;
constexpr double kTensorCoreLseError = 2e-3;
constexpr double kTensorCoreDqkvError = 1e-2;

struct AttentionReference {
  int B, T, C, NH;
  Vec qkv, out, lse, dout, dqkv_start, dqkv;

  // Inputs in [-1, 1]: |scores| <= sqrt(head size), so no probability underflows.
  AttentionReference(int B_, int T_, int C_, int NH_)
      : B(B_),
        T(T_),
        C(C_),
        NH(NH_),
        qkv(random_vec(size_t(B) * T * 3 * C, 34)),
        out(size_t(B) * T * C),
        lse(size_t(B) * NH * T),
        dout(random_vec(out.size(), 36)),
        dqkv_start(random_vec(qkv.size(), 37)),
        dqkv(dqkv_start) {
    Vec att(size_t(B) * NH * T * T), datt(att.size());
    ds::tensor::cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    ds::tensor::cpu::attention_backward(dqkv.data(), datt.data(), dout.data(), qkv.data(),
                                        att.data(), B, T, C, NH);
    // lse = score - log p at any key with p > 0: key 0, which no query masks.
    const int hs = C / NH;
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < NH; ++h) {
        for (int t = 0; t < T; ++t) {
          const float* q = qkv.data() + (size_t(b) * T + t) * 3 * C + size_t(h) * hs;
          const float* k = qkv.data() + size_t(b) * T * 3 * C + C + size_t(h) * hs;
          double score = 0;
          for (int d = 0; d < hs; ++d) score += double(q[d]) * k[d];
          score /= std::sqrt(double(hs));
          const size_t row = (size_t(b) * NH + h) * T + t;
          lse[row] = static_cast<float>(score - std::log(double(att[row * T])));
        }
      }
    }
  }

  // row_dot[b,h,t] = dout_t · out_t over head h, for the given forward output.
  Vec row_dot(const Vec& forward_out) const {
    const int hs = C / NH;
    Vec dots(size_t(B) * NH * T);
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < NH; ++h) {
        for (int t = 0; t < T; ++t) {
          const size_t at = (size_t(b) * T + t) * C + size_t(h) * hs;
          float sum = 0;
          for (int d = 0; d < hs; ++d) sum += dout[at + d] * forward_out[at + d];
          dots[(size_t(b) * NH + h) * T + t] = sum;
        }
      }
    }
    return dots;
  }
};

}  // namespace ds_parity_test
