// Model FLOPs utilization: the FLOPs a training step needs, against what the
// hardware could do.
//
// FLOPs per token are counted as llm.c counts them (after Kaplan et al. 2020,
// section 2.1): 6N for the weight matmuls of the forward (2N) and backward (4N),
// with N all trainable parameters (a tied embedding once: it is the LM head's
// matmul too), plus 6·L·C·T for the attention matmuls (QKᵀ and AV, forward and
// backward) over a context of T tokens. Recomputation is not counted: MFU
// measures useful work.
//
// The peak is per device: for an NVIDIA GPU a dense tensor-core figure from a
// table by device name; for a CPU, OpenBLAS sgemm measured once at start-up with
// the threads the run uses, since the vendor's figure is rarely what a CPU sustains.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ds::worker {

double flops_per_token(int64_t parameters, int64_t n_layer, int64_t n_embd, int64_t seq_len);

enum class Precision { kFp32, kFp16, kBf16 };

// Dense peak FLOP/s of one GPU whose CUDA device name (cudaDeviceProp::name) contains
// a known model ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", ...). fp32 reads
// the TF32 tensor-core figure, as cuBLAS uses TF32 for fp32 matmuls when allowed.
// nullopt for an unknown device or a precision it lacks (bf16 on a V100).
std::optional<double> gpu_peak_flops(std::string_view device_name, Precision precision);

struct PeakFlops {
  double flops_per_s = 0;  // 0: unknown (MFU is then not reported)
  std::string source;      // how it was obtained, for the start-up line
};

// Runs square fp32 sgemms (through the CPU kernels, i.e. OpenBLAS on the OpenMP
// threads the run uses) for about `budget_s` seconds and returns the best rate.
PeakFlops measure_cpu_peak(double budget_s = 0.25);

}  // namespace ds::worker
