// The CUDA ops of tensor/cuda/llama_kernels.h against tensor/cpu/llama_kernels.h, with the
// thresholds of cuda_kernels_test.cpp (max|gpu-cpu| / max|cpu|): 1e-6 for the embedding (the
// GPU sums in the CPU's order), 1e-5 for RMSNorm, rotary embeddings and SwiGLU.
#include <catch2/catch.hpp>

#include "cuda_test_helpers.h"
#include "tensor/cpu/kernels.h"
#include "tensor/cpu/llama_kernels.h"
#include "tensor/cuda/kernels.h"
#include "tensor/cuda/llama_kernels.h"

namespace cpu = ds::tensor::cpu;
using namespace ds_cuda_test;

TEST_CASE("cuda token embedding without positions matches the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const int B = 2, T = 7, C = 48, V = 97;
  Tokens tokens = random_tokens(B * T, V, 1);
  tokens[5] = tokens[2];
  const Vec wte = random_vec(size_t(V) * C, 2);
  Vec out(size_t(B) * T * C);
  cpu::encoder_forward(out.data(), tokens.data(), wte.data(), nullptr, B, T, C);
  auto d_tokens = to_device(tokens, gpu);
  auto d_wte = to_device(wte, gpu);
  auto d_out = cuda::DeviceBuffer::floats(int64_t(out.size()));
  cuda::encoder_forward(d_out.as<float>(), d_tokens.as<int32_t>(), d_wte.as<float>(), nullptr, B, T,
                        C, gpu.s());
  check_parity("embedding_forward", to_host(d_out, gpu), out, 1e-6);

  const Vec dout = random_vec(out.size(), 3);
  Vec dwte = random_vec(wte.size(), 4);
  auto d_dout = to_device(dout, gpu);
  auto d_dwte = to_device(dwte, gpu);
  cpu::encoder_backward(dwte.data(), nullptr, dout.data(), tokens.data(), B, T, C);
  cuda::TokenBuckets buckets;
  buckets.build_from_host(tokens.data(), int64_t{B} * T, gpu.s());
  cuda::encoder_backward(d_dwte.as<float>(), nullptr, d_dout.as<float>(), B, T, C, buckets,
                         gpu.s());
  check_parity("embedding_backward", to_host(d_dwte, gpu), dwte, 1e-6);
}

TEST_CASE("cuda rmsnorm matches the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const auto [N, C] = GENERATE(std::pair{14, 48}, std::pair{5, 131});
  INFO("N=" << N << " C=" << C);
  const Vec inp = random_vec(size_t(N) * C, 10, -2.0f, 2.0f);
  const Vec weight = random_vec(C, 11);
  Vec out(inp.size()), rstd(N);
  cpu::rmsnorm_forward(out.data(), rstd.data(), inp.data(), weight.data(), N, C, 1e-6f);
  auto d_inp = to_device(inp, gpu);
  auto d_weight = to_device(weight, gpu);
  auto d_out = cuda::DeviceBuffer::floats(int64_t(out.size()));
  auto d_rstd = cuda::DeviceBuffer::floats(N);
  cuda::rmsnorm_forward(d_out.as<float>(), d_rstd.as<float>(), d_inp.as<float>(),
                        d_weight.as<float>(), N, C, 1e-6f, gpu.s());
  check_parity("rmsnorm_forward out", to_host(d_out, gpu), out, 1e-5);
  check_parity("rmsnorm_forward rstd", to_host(d_rstd, gpu), rstd, 1e-5);

  const Vec dout = random_vec(out.size(), 12);
  Vec dinp = random_vec(inp.size(), 13);
  Vec dweight = random_vec(C, 14);
  auto d_dout = to_device(dout, gpu);
  auto d_dinp = to_device(dinp, gpu);
  auto d_dweight = to_device(dweight, gpu);
  cpu::rmsnorm_backward(dinp.data(), dweight.data(), dout.data(), inp.data(), weight.data(),
                        rstd.data(), N, C);
  cuda::rmsnorm_backward(d_dinp.as<float>(), d_dweight.as<float>(), d_dout.as<float>(),
                         d_inp.as<float>(), d_weight.as<float>(), d_rstd.as<float>(), N, C,
                         gpu.s());
  check_parity("rmsnorm_backward dinp", to_host(d_dinp, gpu), dinp, 1e-5);
  check_parity("rmsnorm_backward dweight", to_host(d_dweight, gpu), dweight, 1e-5);
}

TEST_CASE("cuda rotary embeddings match the CPU on strided rows", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  // The q part of qkv rows: 3 heads of 16 in rows of 3*48 floats.
  const int B = 2, T = 7, heads = 3, hs = 16, pairs = hs / 2;
  const int N = B * T;
  const int64_t stride = 3 * heads * hs;
  Vec cos(size_t(T) * pairs), sin(size_t(T) * pairs);
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < pairs; ++i) {
      const double angle = t * std::pow(10000.0, -2.0 * i / hs);
      cos[size_t(t) * pairs + i] = float(std::cos(angle));
      sin[size_t(t) * pairs + i] = float(std::sin(angle));
    }
  }
  Vec x = random_vec(size_t(N) * stride, 20);
  auto d_x = to_device(x, gpu);
  auto d_cos = to_device(cos, gpu);
  auto d_sin = to_device(sin, gpu);
  cpu::rope_forward(x.data(), cos.data(), sin.data(), N, T, heads, hs, stride);
  cuda::rope_forward(d_x.as<float>(), d_cos.as<float>(), d_sin.as<float>(), N, T, heads, hs, stride,
                     gpu.s());
  check_parity("rope_forward", to_host(d_x, gpu), x, 1e-5);

  Vec dx = random_vec(x.size(), 21);
  auto d_dx = to_device(dx, gpu);
  cpu::rope_backward(dx.data(), cos.data(), sin.data(), N, T, heads, hs, stride);
  cuda::rope_backward(d_dx.as<float>(), d_cos.as<float>(), d_sin.as<float>(), N, T, heads, hs,
                      stride, gpu.s());
  check_parity("rope_backward", to_host(d_dx, gpu), dx, 1e-5);
}

TEST_CASE("cuda SwiGLU matches the CPU, dgate over dout included", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const int64_t N = GENERATE(int64_t{2 * 7 * 128}, int64_t{1001});
  const Vec gate = random_vec(N, 30, -6.0f, 6.0f);
  const Vec up = random_vec(N, 31);
  Vec out(N);
  cpu::swiglu_forward(out.data(), gate.data(), up.data(), N);
  auto d_gate = to_device(gate, gpu);
  auto d_up = to_device(up, gpu);
  auto d_out = cuda::DeviceBuffer::floats(N);
  cuda::swiglu_forward(d_out.as<float>(), d_gate.as<float>(), d_up.as<float>(), N, gpu.s());
  check_parity("swiglu_forward", to_host(d_out, gpu), out, 1e-5);

  Vec dout = random_vec(N, 32);
  Vec dup(N);
  auto d_dout = to_device(dout, gpu);
  auto d_dup = cuda::DeviceBuffer::floats(N);
  cpu::swiglu_backward(dout.data(), dup.data(), dout.data(), gate.data(), up.data(), N);
  cuda::swiglu_backward(d_dout.as<float>(), d_dup.as<float>(), d_dout.as<float>(),
                        d_gate.as<float>(), d_up.as<float>(), N, gpu.s());
  check_parity("swiglu_backward dgate", to_host(d_dout, gpu), dout, 1e-5);
  check_parity("swiglu_backward dup", to_host(d_dup, gpu), dup, 1e-5);
}

TEST_CASE("cuda grouped-query key/value heads match the CPU", "[cuda]") {
  DS_SKIP_WITHOUT_GPU();
  Gpu gpu;
  const int N = 9, NH = 6, KVH = 2, hs = 8, C = NH * hs, KV = KVH * hs;
  const Vec q = random_vec(size_t(N) * C, 40), k = random_vec(size_t(N) * KV, 41);
  const Vec v = random_vec(size_t(N) * KV, 42);
  Vec qkv(size_t(N) * 3 * C);
  cpu::expand_kv_heads(qkv.data(), q.data(), k.data(), v.data(), N, NH, KVH, hs);
  auto d_q = to_device(q, gpu);
  auto d_k = to_device(k, gpu);
  auto d_v = to_device(v, gpu);
  auto d_qkv = cuda::DeviceBuffer::floats(int64_t(qkv.size()));
  cuda::expand_kv_heads(d_qkv.as<float>(), d_q.as<float>(), d_k.as<float>(), d_v.as<float>(), N, NH,
                        KVH, hs, gpu.s());
  check_parity("expand_kv_heads", to_host(d_qkv, gpu), qkv, 0.0);

  const Vec dqkv = random_vec(qkv.size(), 43);
  Vec dq(q.size()), dk(k.size()), dv(v.size());
  cpu::reduce_kv_heads(dq.data(), dk.data(), dv.data(), dqkv.data(), N, NH, KVH, hs);
  auto d_dqkv = to_device(dqkv, gpu);
  cuda::reduce_kv_heads(d_q.as<float>(), d_k.as<float>(), d_v.as<float>(), d_dqkv.as<float>(), N,
                        NH, KVH, hs, gpu.s());
  check_parity("reduce_kv_heads dq", to_host(d_q, gpu), dq, 0.0);
  check_parity("reduce_kv_heads dk", to_host(d_k, gpu), dk, 1e-6);
  check_parity("reduce_kv_heads dv", to_host(d_v, gpu), dv, 1e-6);
}
