#include "worker/mfu.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "tensor/cpu/kernels.h"
#include "util/log.h"

namespace ds::worker {

double flops_per_token(int64_t parameters, int64_t n_layer, int64_t n_embd, int64_t seq_len) {
  return 6.0 * static_cast<double>(parameters) + 6.0 * static_cast<double>(n_layer) *
                                                     static_cast<double>(n_embd) *
                                                     static_cast<double>(seq_len);
}

namespace {

// Dense tensor-core TFLOP/s from NVIDIA's data sheets (the "with sparsity" figures
// halved). The first entry whose key the device name contains wins, so longer keys
// come before their prefixes ("A100" before "A10", "L40S" before "L40" and "L4").
struct GpuPeak {
  const char* key;
  double tf32, bf16, fp16;  // TFLOP/s; 0: not supported
};
constexpr GpuPeak kGpuPeaks[] = {
    {"GB200", 1250, 2500, 2500},
    {"B200", 1100, 2250, 2250},
    {"H200", 494.7, 989.4, 989.4},
    {"H100 PCIe", 378, 756, 756},
    {"H100 NVL", 417.5, 835, 835},
    {"H100", 494.7, 989.4, 989.4},  // SXM5 ("H100 80GB HBM3")
    {"H800", 494.7, 989.4, 989.4},
    {"GH200", 494.7, 989.4, 989.4},
    {"A100", 156, 312, 312},
    {"A800", 156, 312, 312},
    {"A40", 74.8, 149.7, 149.7},
    {"A30", 82, 165, 165},
    {"A10G", 35, 70, 70},
    {"A10", 62.5, 125, 125},
    {"L40S", 183, 362, 362},
    {"L40", 90.5, 181, 181},
    {"L4", 60, 121, 121},
    {"RTX 6000 Ada", 182, 364, 364},
    {"RTX A6000", 77.4, 154.8, 154.8},
    {"RTX 4090", 82.6, 165.2, 165.2},
    {"RTX 3090", 35.6, 71, 71},
    {"V100", 0, 0, 125},  // tensor cores do fp16 only
    {"T4", 0, 0, 65},
};

}  // namespace

std::optional<double> gpu_peak_flops(std::string_view device_name, Precision precision) {
  for (const GpuPeak& gpu : kGpuPeaks) {
    if (device_name.find(gpu.key) == std::string_view::npos) continue;
    const double tflops = precision == Precision::kBf16   ? gpu.bf16
                          : precision == Precision::kFp16 ? gpu.fp16
                                                          : gpu.tf32;
    if (tflops <= 0) return std::nullopt;
    return tflops * 1e12;
  }
  return std::nullopt;
}

PeakFlops measure_cpu_peak(double budget_s) {
  using Clock = std::chrono::steady_clock;
  // 1024³ is large enough for OpenBLAS to reach its plateau on a few cores and small
  // enough (2.1 GFLOP) that one call stays well under the budget.
  constexpr int kN = 1024;
  std::vector<float> a(static_cast<size_t>(kN) * kN), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
    b[i] = static_cast<float>(i % 5) * 0.5f - 1.0f;
  }
  const double flops = 2.0 * kN * kN * kN;
  const auto start = Clock::now();
  double best = 0;
  for (int run = 0;; ++run) {
    const auto t0 = Clock::now();
    tensor::cpu::matmul_forward(c.data(), a.data(), b.data(), nullptr, kN, kN, kN,
                                tensor::cpu::WeightLayout::kInOut);
    const auto t1 = Clock::now();
    const double seconds = std::chrono::duration<double>(t1 - t0).count();
    if (run > 0) best = std::max(best, flops / std::max(seconds, 1e-9));  // run 0 warms up
    const double spent = std::chrono::duration<double>(t1 - start).count();
    if (run >= 1 && (spent + seconds > budget_s || run >= 50)) break;
  }
  const int threads = omp_get_max_threads();
  return {best, fmt::format("fp32 sgemm {}³ measured on {} thread{}", kN, threads,
                            threads == 1 ? "" : "s")};
}

}  // namespace ds::worker
