#include "bench/gemm_bench.h"

#include <fmt/format.h>

#include <functional>
#include <random>
#include <vector>

#include "util/error.h"

#if defined(DS_WITH_CUDA)
#include <cuda_runtime_api.h>

#include "tensor/cuda/blas.h"
#include "tensor/cuda/cast_kernels.h"
#include "tensor/cuda/classifier.h"
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/device_buffer.h"
#include "tensor/cuda/lt_matmul.h"
#endif

namespace ds::bench {

#if defined(DS_WITH_CUDA)
namespace {

using tensor::DType;
using tensor::MatmulPrecision;
using tensor::cpu::WeightLayout;
namespace cuda = tensor::cuda;

// Device buffers of random values in [-1, 1] (not zeros, which some GPUs multiply faster), in
// fp32 and rounded to bf16.
struct Operand {
  cuda::DeviceBuffer f32, bf16;
  Operand(int64_t n, uint32_t seed, cudaStream_t stream)
      : f32(sizeof(float) * static_cast<size_t>(n)), bf16(2 * static_cast<size_t>(n)) {
    // A random block, repeated: the logits are 800 M values.
    std::vector<float> block(size_t{1} << 20);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    for (float& x : block) x = value(rng);
    std::vector<float> host(static_cast<size_t>(n));
    for (size_t i = 0; i < host.size(); ++i) host[i] = block[i % block.size()];
    f32.upload(host.data(), sizeof(float) * host.size(), stream);
    cuda::from_f32(bf16.data(), DType::kBF16, f32.as<float>(), n, stream);
  }
  void* at(DType dtype) const { return dtype == DType::kBF16 ? bf16.data() : f32.data(); }
};

// Milliseconds per call of `call`, over options.iters calls after options.warmup.
double time_ms(const GemmBenchOptions& options, cudaStream_t stream,
               const std::function<void()>& call) {
  for (int i = 0; i < options.warmup; ++i) call();
  cudaEvent_t start = nullptr, stop = nullptr;
  DS_CUDA_CALL(cudaEventCreate(&start));
  DS_CUDA_CALL(cudaEventCreate(&stop));
  DS_CUDA_CALL(cudaEventRecord(start, stream));
  for (int i = 0; i < options.iters; ++i) call();
  DS_CUDA_CALL(cudaEventRecord(stop, stream));
  DS_CUDA_CALL(cudaEventSynchronize(stop));
  float ms = 0;
  DS_CUDA_CALL(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / options.iters;
}

std::string cell(double ms, double flops) {
  return fmt::format("{:8.3f} ms {:5.0f} TF/s", ms, flops / (ms * 1e-3) / 1e12);
}

struct Mode {
  const char* name;
  MatmulPrecision precision;
  DType dtype;
};

}  // namespace

int run_gemm_bench(const GemmBenchOptions& options) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    throw Error("dsbench gemm: no CUDA device is visible", "run it on a machine with a GPU");
  }
  DS_CUDA_CALL(cudaSetDevice(0));
  cuda::Stream stream_owner;
  const cudaStream_t stream = stream_owner.get();
  const int N = options.tokens, C = options.embd, V = options.vocab;
  const Mode modes[] = {{"f32 -> bf16", MatmulPrecision::kBf16, DType::kF32},
                        {"bf16", MatmulPrecision::kBf16, DType::kBF16},
                        {"tf32", MatmulPrecision::kTf32, DType::kF32}};

  // The largest operands any product below takes: activations [N, 4C], weights [4C, C] and
  // the head [V, C], the logits [N, V].
  const int64_t act = int64_t{N} * 4 * C, weight = int64_t{4} * C * C;
  Operand inp(act, 1, stream), out(act, 2, stream), dout(act, 3, stream), dinp(act, 4, stream);
  Operand pre(act, 5, stream), w(weight, 6, stream), dw(weight, 7, stream);
  Operand bias(4 * C, 8, stream), dbias(4 * C, 9, stream);
  DS_CUDA_CALL(cudaStreamSynchronize(stream));

  fmt::print("GEMMs of one GPT-2 micro-batch on {} GPU: N = {} tokens, C = {}, V = {}\n",
             devices > 1 ? "the first" : "the", N, C, V);
  fmt::print("{:<28} {:<12} {:>22} {:>22}\n", "product (N x in x out)", "operands", "forward",
             "backward");
  struct Shape {
    const char* name;
    int in, out;
    bool gelu;
  };
  const Shape shapes[] = {{"qkv", C, 3 * C, false},
                          {"attention proj", C, C, false},
                          {"mlp fc + GELU", C, 4 * C, true},
                          {"mlp proj", 4 * C, C, false}};
  for (const Shape& s : shapes) {
    const double flops = 2.0 * N * s.in * s.out;
    for (const Mode& m : modes) {
      // Algorithms chosen as the model's are (timed unless DS_GEMM_TUNING=0).
      cuda::LtMatmul lt(cuda::LtMatmul::Options{
          .precision = m.precision, .time_algorithms = cuda::LtMatmul::timing_requested()});
      const DType t = m.dtype;
      const double forward = time_ms(options, stream, [&] {
        if (s.gelu) {
          lt.forward_gelu(out.at(t), pre.at(t), inp.at(t), w.at(t), bias.at(t), N, s.in, s.out,
                          WeightLayout::kInOut, t, stream);
        } else {
          lt.forward(out.at(t), inp.at(t), w.at(t), bias.at(t), N, s.in, s.out,
                     WeightLayout::kInOut, t, stream);
        }
      });
      // The GELU's derivative goes with the next product's input gradient (backward_gelu), so
      // every backward here is a plain one. The weight gradients are fp32 in every mode, as the
      // bf16 MLP keeps them (bf16_mlp.h).
      const double backward = time_ms(options, stream, [&] {
        lt.backward(dinp.at(t), dw.f32.data(), dbias.f32.data(), dout.at(t), inp.at(t), w.at(t), N,
                    s.in, s.out, WeightLayout::kInOut, {t, t, DType::kF32}, stream);
      });
      fmt::print("{:<28} {:<12} {:>22} {:>22}\n",
                 fmt::format("{} {}x{}x{}", s.name, N, s.in, s.out), m.name, cell(forward, flops),
                 cell(backward, 2 * flops));
    }
  }

  // The LM head: logits[N, V] = inp · headᵀ, then dinp += dlogits · head and dhead += dlogitsᵀ ·
  // inp, with the logits' rows ld apart and the vocabulary dimension of the GEMMs V or padded
  // (zero rows of the head), then the whole op as the model runs it (classifier.h).
  const int64_t padded = cuda::Classifier::padded(V);
  Operand head(padded * C, 10, stream), dhead(padded * C, 11, stream);
  Operand logits(int64_t{N} * padded, 12, stream);
  DS_CUDA_CALL(cudaStreamSynchronize(stream));
  cuda::Blas blas(MatmulPrecision::kBf16);
  struct HeadMode {
    const char* name;
    DType dtype;
    int64_t ld;
    int64_t vocab;  // the GEMMs' vocabulary dimension
  };
  const HeadMode head_modes[] = {{"f32 -> bf16", DType::kF32, padded, V},
                                 {"bf16", DType::kBF16, V, V},
                                 {"bf16", DType::kBF16, padded, V},
                                 {"bf16", DType::kBF16, padded, padded}};
  const double head_flops = 2.0 * N * C * V;
  for (const HeadMode& h : head_modes) {
    const bool bf16 = h.dtype == DType::kBF16;
    const cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t compute = bf16 ? CUBLAS_COMPUTE_32F : blas.compute_type();
    const int vocab = static_cast<int>(h.vocab);
    const double forward = time_ms(options, stream, [&] {
      cuda::gemm_ex(blas, stream, false, true, N, vocab, C, 1.0f, {inp.at(h.dtype), type, C},
                    {head.at(h.dtype), type, C}, 0.0f, logits.at(h.dtype), type, h.ld, compute);
    });
    const double backward = time_ms(options, stream, [&] {
      const cuda::GemmOperand d{logits.at(h.dtype), type, h.ld};
      cuda::gemm_ex(blas, stream, false, false, N, C, vocab, 1.0f, d, {head.at(h.dtype), type, C},
                    1.0f, dinp.f32.data(), CUDA_R_32F, C, compute);
      cuda::gemm_ex(blas, stream, true, false, vocab, C, N, 1.0f, d, {inp.at(h.dtype), type, C},
                    1.0f, dhead.f32.data(), CUDA_R_32F, C, compute);
    });
    fmt::print("{:<28} {:<12} {:>22} {:>22}\n",
               fmt::format("LM head {}x{}x{}, ld {}", N, C, h.vocab, h.ld), h.name,
               cell(forward, head_flops), cell(backward, 2 * head_flops));
  }
  // The whole op: rounding, GEMMs, the fused cross-entropy, the weight gradient's padding.
  cuda::Classifier classifier(blas, true);
  cuda::DeviceBuffer losses(sizeof(float) * static_cast<size_t>(N));
  cuda::DeviceBuffer targets(sizeof(int32_t) * static_cast<size_t>(N));
  DS_CUDA_CALL(cudaMemsetAsync(targets.data(), 0, targets.bytes(), stream));
  const double forward = time_ms(options, stream, [&] {
    classifier.forward(losses.as<float>(), logits.f32.as<float>(), inp.f32.as<float>(),
                       head.f32.as<float>(), targets.as<int32_t>(), 1.0f / N, N, C, V, stream);
  });
  const double backward = time_ms(options, stream, [&] {
    classifier.backward(dinp.f32.as<float>(), dhead.f32.as<float>(), logits.f32.as<float>(),
                        inp.f32.as<float>(), head.f32.as<float>(), N, C, V, stream);
  });
  fmt::print("{:<28} {:<12} {:>22} {:>22}\n", fmt::format("classifier op {}x{}x{}", N, C, V),
             "as run", cell(forward, head_flops), cell(backward, 2 * head_flops));
  return 0;
}

#else

int run_gemm_bench(const GemmBenchOptions&) {
  throw Error("dsbench gemm: this build has no CUDA",
              "build with -DDS_CUDA=ON on a machine with the CUDA toolkit");
}

#endif

}  // namespace ds::bench
