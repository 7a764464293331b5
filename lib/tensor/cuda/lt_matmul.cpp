#include "tensor/cuda/lt_matmul.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "tensor/cuda/bf16_kernels.h"
#include "tensor/cuda/blas.h"
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/variant_timing.h"
#include "util/env.h"
#include "util/error.h"
#include "util/log.h"

namespace ds::tensor::cuda {

using cpu::WeightLayout;

namespace {

const char* compute_name(cublasComputeType_t compute) {
  switch (compute) {
    case CUBLAS_COMPUTE_32F_FAST_TF32:
      return "tf32";
    case CUBLAS_COMPUTE_32F_FAST_16BF:
      return "fp32 with bf16 inputs";
    default:
      return "fp32";
  }
}

// Every pointer handed to cuBLASLt is at least this aligned (checked per call), and the
// heuristic is told so, so that an algorithm chosen once serves every later call.
constexpr uint32_t kAlignment = 16;
// Algorithm timing (Options::time_algorithms): another algorithm than the heuristic's first is
// chosen only when it takes under this share of the first's time, and a scratch output is made
// only when this much device memory would stay free beside it.
constexpr float kTimingMargin = 0.97f;
constexpr size_t kTimingMemoryReserve = size_t{256} << 20;
// The pre-GELU matrix's leading dimension must be a multiple of this (cublasLt.h,
// CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD).
constexpr int kAuxLdMultiple = 8;
constexpr size_t kMinBiasScratch = size_t{64} << 10;

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
  }
  throw Error(fmt::format("LtMatmul: unknown dtype {}", static_cast<int>(dtype)));
}

bool uses_bias(uint32_t epilogue) {
  return epilogue == CUBLASLT_EPILOGUE_BIAS || epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS ||
         epilogue == CUBLASLT_EPILOGUE_BGRADA || epilogue == CUBLASLT_EPILOGUE_BGRADB;
}

bool uses_aux(uint32_t epilogue) {
  return epilogue == CUBLASLT_EPILOGUE_GELU_AUX || epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS ||
         epilogue == CUBLASLT_EPILOGUE_DGELU;
}

const char* epilogue_name(uint32_t epilogue) {
  switch (epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT:
      return "DEFAULT";
    case CUBLASLT_EPILOGUE_BIAS:
      return "BIAS";
    case CUBLASLT_EPILOGUE_GELU_AUX:
      return "GELU_AUX";
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS:
      return "GELU_AUX_BIAS";
    case CUBLASLT_EPILOGUE_DGELU:
      return "DGELU";
    case CUBLASLT_EPILOGUE_BGRADA:
      return "BGRADA";
    case CUBLASLT_EPILOGUE_BGRADB:
      return "BGRADB";
    default:
      return "?";
  }
}

template <typename T>
void set(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  DS_CUBLAS_CALL(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
}

template <typename T>
void set(cublasLtMatmulPreference_t preference, cublasLtMatmulPreferenceAttributes_t attribute,
         const T& value) {
  DS_CUBLAS_CALL(
      cublasLtMatmulPreferenceSetAttribute(preference, attribute, &value, sizeof(value)));
}

void check_aligned(const void* pointer, const char* what) {
  DS_CHECK(LtMatmul::aligned(pointer),
           "LtMatmul: {} ({}) is not {}-byte aligned, which cuBLASLt's kernels need; a view into "
           "a device buffer must start at a multiple of 8 bf16/f16 or 4 f32 elements",
           what, pointer, kAlignment);
}

void check_shape(int N, int IC, int OC) {
  DS_CHECK(N >= 0 && IC > 0 && OC > 0, "LtMatmul: bad shape N={} IC={} OC={}", N, IC, OC);
}

// The three GEMMs of a linear layer in cuBLASLt's column-major terms. A row-major [R][C] matrix
// is a column-major C×R one with the same memory, so out[N,OC] = inp[N,IC]·W is
// out^T[OC,N] = op(W') · inp^T, with W' the column-major view of W: OC×IC for kInOut (op: none),
// IC×OC for kOutIn (op: transpose). Every operand is packed (leading dimension = stored rows).
struct Gemm {
  bool trans_a;
  bool trans_b;
  int m;
  int n;
  int k;
};

// out^T[OC,N] = op(weight) · inp^T: A = weight, B = inp.
Gemm forward_gemm(int N, int IC, int OC, WeightLayout layout) {
  return {layout == WeightLayout::kOutIn, false, OC, N, IC};
}
// dinp^T[IC,N] = op(weight) · dout^T: A = weight, B = dout.
Gemm input_grad_gemm(int N, int IC, int OC, WeightLayout layout) {
  return {layout == WeightLayout::kInOut, false, IC, N, OC};
}
// kInOut: dW^T[OC,IC] = dout^T · inp (A = dout, B = inp^T); kOutIn: dW^T[IC,OC] = inp^T · dout
// (A = inp, B = dout^T). The bias gradient, column sums of dout, sums A's rows (BGRADA) in the
// first case and B's columns (BGRADB) in the second: a reduction over k = N either way.
Gemm weight_grad_gemm(int N, int IC, int OC, WeightLayout layout) {
  return layout == WeightLayout::kInOut ? Gemm{false, true, OC, IC, N}
                                        : Gemm{false, true, IC, OC, N};
}

// The plan key of product `g` (Key: LtMatmul's private GemmKey).
template <typename Key>
Key key_of(const Gemm& g, DType operands, DType out, uint32_t epilogue) {
  return Key{operands, out, epilogue, g.trans_a, g.trans_b, g.m, g.n, g.k};
}

}  // namespace

struct LtMatmul::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;
  cublasLtMatrixLayout_t b = nullptr;
  cublasLtMatrixLayout_t d = nullptr;  // also C's layout (C is D, or a matrix laid out as D)
  cublasLtMatmulAlgo_t algo{};
  // The heuristic's algorithms, best guess first, until choose_algorithm has picked one.
  std::vector<cublasLtMatmulAlgo_t> candidates;
  bool supported = false;
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;  // the heuristic's, for messages

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

LtMatmul::LtMatmul() : LtMatmul(Options{}) {}

LtMatmul::LtMatmul(Options options) : options_(options) {
  DS_CHECK(options_.workspace_bytes >= 256, "LtMatmul: a workspace of {} bytes is too small",
           options_.workspace_bytes);
  workspace_ = DeviceBuffer(options_.workspace_bytes);
  ++stats_.device_allocations;
  DS_CUBLAS_CALL(cublasLtCreate(&handle_));
  try {
    DS_CUBLAS_CALL(cublasLtMatmulPreferenceCreate(&preference_));
    set(preference_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
        static_cast<uint64_t>(options_.workspace_bytes));
    // Split-K only with fp32 partial sums reduced in a separate step (no split-K at all is
    // always allowed): INPLACE would add the partial sums in bf16/f16.
    set(preference_, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
        static_cast<uint32_t>(CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE));
    for (const auto attribute :
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
      set(preference_, attribute, kAlignment);
    }
  } catch (...) {
    if (preference_ != nullptr) cublasLtMatmulPreferenceDestroy(preference_);
    cublasLtDestroy(handle_);
    throw;
  }
}

LtMatmul::~LtMatmul() {
  plans_.clear();
  if (preference_ != nullptr) cublasLtMatmulPreferenceDestroy(preference_);
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

LtMatmul::Plan& LtMatmul::plan(const GemmKey& key) {
  const auto found = plans_.find(key);
  if (found != plans_.end()) return *found->second;

  auto plan = std::make_unique<Plan>();
  const cudaDataType_t type = cuda_type(key.dtype);
  const cublasComputeType_t compute = compute_type(key.dtype);
  DS_CUBLAS_CALL(cublasLtMatmulDescCreate(&plan->desc, compute, CUDA_R_32F));
  set(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
      static_cast<int32_t>(key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N));
  set(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
      static_cast<int32_t>(key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N));
  set(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, key.epilogue);
  // The heuristic reads the bias and aux pointers' values (never their contents) to learn their
  // alignment. A real device address that is 16-byte aligned and no more makes it pick an
  // algorithm that any later 16-byte aligned pointer can use.
  const void* probe = static_cast<const char*>(workspace_.data()) + kAlignment;
  if (uses_bias(key.epilogue)) {
    set(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<int32_t>(cuda_type(key.out)));
    set(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, probe);
  }
  if (uses_aux(key.epilogue)) {
    set(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, static_cast<int64_t>(key.m));
    set(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, probe);
  }
  // Packed column-major operands: the leading dimension is the stored matrix's row count.
  const uint64_t a_rows = key.trans_a ? key.k : key.m;
  const uint64_t a_cols = key.trans_a ? key.m : key.k;
  const uint64_t b_rows = key.trans_b ? key.n : key.k;
  const uint64_t b_cols = key.trans_b ? key.k : key.n;
  DS_CUBLAS_CALL(cublasLtMatrixLayoutCreate(&plan->a, type, a_rows, a_cols, int64_t(a_rows)));
  DS_CUBLAS_CALL(cublasLtMatrixLayoutCreate(&plan->b, type, b_rows, b_cols, int64_t(b_rows)));
  DS_CUBLAS_CALL(
      cublasLtMatrixLayoutCreate(&plan->d, cuda_type(key.out), key.m, key.n, int64_t{key.m}));

  std::vector<cublasLtMatmulHeuristicResult_t> results(
      options_.time_algorithms ? kAlgorithmCandidates : 1);
  int count = 0;
  plan->status = cublasLtMatmulAlgoGetHeuristic(
      handle_, plan->desc, plan->a, plan->b, plan->d, plan->d, preference_,
      static_cast<int>(results.size()), results.data(), &count);
  ++stats_.plans;
  // NOT_SUPPORTED (or no result) means no algorithm for this epilogue and shape: the caller
  // takes the unfused path, or throws for a plain GEMM.
  if (plan->status == CUBLAS_STATUS_SUCCESS && count > 0) plan->status = results[0].state;
  plan->supported = plan->status == CUBLAS_STATUS_SUCCESS && count > 0;
  if (plan->supported) {
    plan->algo = results[0].algo;
    for (int i = 0; i < count; ++i) {
      if (results[i].state == CUBLAS_STATUS_SUCCESS) plan->candidates.push_back(results[i].algo);
    }
    if (plan->candidates.size() < 2) plan->candidates.clear();  // nothing to choose between
  } else {
    // Anything but "not supported" means cuBLASLt rejected the request itself (a descriptor
    // attribute, say): still handled by the fallback, but loudly, as a slower step would be the
    // only other sign of it.
    const bool refused =
        plan->status != CUBLAS_STATUS_SUCCESS && plan->status != CUBLAS_STATUS_NOT_SUPPORTED;
    const std::string what =
        fmt::format("LtMatmul: cuBLASLt has no {} algorithm for {} -> {} m={} n={} k={} ({})",
                    epilogue_name(key.epilogue), dtype_name(key.dtype), dtype_name(key.out), key.m,
                    key.n, key.k,
                    plan->status != CUBLAS_STATUS_SUCCESS ? cublasGetStatusName(plan->status)
                                                          : "no algorithm returned");
    if (refused) {
      log::warn("{}: {} instead", what,
                key.epilogue != CUBLASLT_EPILOGUE_DEFAULT ? "separate kernels" : "cuBLAS");
    } else if (key.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
      log::debug("{}: separate kernels instead", what);
    }
  }
  return *plans_.emplace(key, std::move(plan)).first->second;
}

bool LtMatmul::try_gemm(const GemmKey& key, const void* a, const void* b, const void* c, void* d,
                        float beta, const void* bias, const void* aux, cudaStream_t stream) {
  Plan& p = plan(key);
  if (!p.supported) return false;
  if (uses_bias(key.epilogue)) set(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  if (uses_aux(key.epilogue)) set(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
  if (!p.candidates.empty()) choose_algorithm(p, key, a, b, c, d, beta, stream);
  const float alpha = 1.0f;
  DS_CUBLAS_CALL(cublasLtMatmul(handle_, p.desc, &alpha, a, p.a, b, p.b, &beta, c, p.d, d, p.d,
                                &p.algo, workspace_.data(), workspace_.bytes(), stream));
  return true;
}

void LtMatmul::choose_algorithm(Plan& p, const GemmKey& key, const void* a, const void* b,
                                const void* c, void* d, float beta, cudaStream_t stream) {
  const std::vector<cublasLtMatmulAlgo_t> candidates = std::exchange(p.candidates, {});
  // A GEMM that adds to its output would add once per timed run: those runs write a scratch D
  // and read C, which stays as it was. Without the memory for it, the heuristic's first stays.
  DeviceBuffer scratch;
  void* trial_d = d;
  if (beta != 0.0f && c == d) {
    const size_t bytes = dtype_size(key.out) * size_t(key.m) * size_t(key.n);
    size_t free_bytes = 0, total_bytes = 0;
    DS_CUDA_CALL(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (bytes + kTimingMemoryReserve > free_bytes) {
      log::debug(
          "LtMatmul: no room for a {}-byte scratch to time algorithms for m={} n={} k={}: "
          "the heuristic's first",
          bytes, key.m, key.n, key.k);
      return;
    }
    scratch = DeviceBuffer(bytes);
    ++stats_.device_allocations;
    trial_d = scratch.data();
  }
  // A candidate that refuses to launch (as the heuristic says, none should) is never chosen.
  std::vector<bool> failed(candidates.size(), false);
  const float alpha = 1.0f;
  std::vector<float> ms = time_each(
      static_cast<int>(candidates.size()),
      [&](int i) {
        if (failed[i]) return;
        failed[i] = cublasLtMatmul(handle_, p.desc, &alpha, a, p.a, b, p.b, &beta, c, p.d, trial_d,
                                   p.d, &candidates[i], workspace_.data(), workspace_.bytes(),
                                   stream) != CUBLAS_STATUS_SUCCESS;
      },
      stream);
  for (size_t i = 0; i < ms.size(); ++i) {
    if (failed[i]) ms[i] = std::numeric_limits<float>::infinity();
  }
  // Another than the heuristic's first only where clearly faster: a choice by timing noise would
  // make processes differ in their last bits for nothing.
  size_t chosen = 0;
  for (size_t i = 1; i < ms.size(); ++i) {
    if (ms[i] < ms[chosen] && ms[i] < kTimingMargin * ms[0]) chosen = i;
  }
  p.algo = candidates[chosen];
  ++stats_.timed;
  if (chosen != 0) {
    ++stats_.faster_than_first;
    stats_.ms_saved += ms[0] - ms[chosen];
  }
  log::debug(
      "LtMatmul: {} {} -> {} m={} n={} k={}: the heuristic's first of {} algorithms {:.3f} "
      "ms, chosen #{} {:.3f} ms",
      epilogue_name(key.epilogue), dtype_name(key.dtype), dtype_name(key.out), key.m, key.n, key.k,
      candidates.size(), ms[0], chosen + 1, ms[chosen]);
}

void LtMatmul::gemm(const GemmKey& key, const void* a, const void* b, void* d, float beta,
                    cudaStream_t stream, const void* c) {
  if (try_gemm(key, a, b, c == nullptr ? d : c, d, beta, nullptr, nullptr, stream)) return;
  const Plan& p = plan(key);
  throw Error(fmt::format("cuBLASLt has no algorithm for a {} -> {} GEMM (m={} n={} k={}, A{} "
                          "B{}, epilogue {}, {} compute): {}",
                          dtype_name(key.dtype), dtype_name(key.out), key.m, key.n, key.k,
                          key.trans_a ? "^T" : "", key.trans_b ? "^T" : "",
                          epilogue_name(key.epilogue), compute_name(compute_type(key.dtype)),
                          p.status == CUBLAS_STATUS_SUCCESS ? "no algorithm returned"
                                                            : cublasGetStatusName(p.status)),
              "CUBLASLT_LOG_LEVEL=5 makes cuBLASLt log why it rejects the call");
}

cublasComputeType_t LtMatmul::compute_type(DType dtype) const {
  // 16-bit storage has nothing left to round: plain fp32 accumulation.
  return dtype == DType::kF32 ? cublas_compute_type(options_.precision) : CUBLAS_COMPUTE_32F;
}

void* LtMatmul::bias_scratch(size_t bytes) {
  if (bias_scratch_.bytes() < bytes) {
    // The old scratch may still be read by work queued on some stream; cudaFree would wait
    // for the device anyway, this says so. Only the first steps ever grow it.
    if (!bias_scratch_.empty()) DS_CUDA_CALL(cudaDeviceSynchronize());
    bias_scratch_ = DeviceBuffer(std::max(bytes, kMinBiasScratch));
    ++stats_.device_allocations;
  }
  return bias_scratch_.data();
}

bool LtMatmul::timing_requested() {
  return env_switch("DS_GEMM_TUNING", "timing cuBLASLt's algorithms");
}

bool LtMatmul::aligned(const void* pointer) {
  static_assert(kAlignment == 16, "aligned_16 is cuBLASLt's alignment");
  return aligned_16(pointer);
}

bool LtMatmul::supports(int N, int IC, int OC, WeightLayout layout, Storage storage) {
  if (N == 0) return true;
  const std::pair<Gemm, DType> products[] = {
      {forward_gemm(N, IC, OC, layout), storage.outputs},
      {input_grad_gemm(N, IC, OC, layout), storage.outputs},
      {weight_grad_gemm(N, IC, OC, layout), storage.weight_grads}};
  for (const auto& [g, out] : products) {
    if (!plan(key_of<GemmKey>(g, storage.operands, out, CUBLASLT_EPILOGUE_DEFAULT)).supported)
      return false;
  }
  return true;
}

void LtMatmul::forward(void* out, const void* inp, const void* weight, const void* bias, int N,
                       int IC, int OC, WeightLayout layout, Storage storage, cudaStream_t stream) {
  forward_residual(out, nullptr, inp, weight, bias, N, IC, OC, layout, storage, stream);
}

void LtMatmul::forward_residual(void* out, const void* residual, const void* inp,
                                const void* weight, const void* bias, int N, int IC, int OC,
                                WeightLayout layout, Storage storage, cudaStream_t stream) {
  check_shape(N, IC, OC);
  if (N == 0) return;
  check_aligned(out, "out");
  check_aligned(inp, "inp");
  check_aligned(weight, "weight");
  check_aligned(residual, "residual");
  // The residual comes in as the GEMM's C matrix: D = A·B + 1·C (+ the bias epilogue).
  const void* c = residual == nullptr ? out : residual;
  const float beta = residual == nullptr ? 0.0f : 1.0f;
  const GemmKey plain = key_of<GemmKey>(forward_gemm(N, IC, OC, layout), storage.operands,
                                        storage.outputs, CUBLASLT_EPILOGUE_DEFAULT);
  if (bias == nullptr) {
    gemm(plain, weight, inp, out, beta, stream, c);
    return;
  }
  check_aligned(bias, "bias");
  GemmKey fused = plain;
  fused.epilogue = CUBLASLT_EPILOGUE_BIAS;
  if (options_.fuse_epilogues &&
      try_gemm(fused, weight, inp, c, out, beta, bias, nullptr, stream)) {
    ++stats_.fused;
    return;
  }
  // Start from the bias (and the residual) and let the GEMM add to it, as cuda::matmul_forward
  // does.
  mixed::broadcast_rows(out, bias, N, OC, storage.outputs, stream);
  if (residual != nullptr)
    mixed::add_inplace(out, residual, int64_t{N} * OC, storage.outputs, stream);
  gemm(plain, weight, inp, out, 1.0f, stream);
  ++stats_.unfused;
}

void LtMatmul::forward_gelu(void* out, void* pre_gelu, const void* inp, const void* weight,
                            const void* bias, int N, int IC, int OC, WeightLayout layout,
                            Storage storage, cudaStream_t stream) {
  check_shape(N, IC, OC);
  DS_CHECK(pre_gelu != nullptr, "LtMatmul::forward_gelu needs a pre_gelu buffer");
  if (N == 0) return;
  check_aligned(out, "out");
  check_aligned(pre_gelu, "pre_gelu");
  check_aligned(inp, "inp");
  check_aligned(weight, "weight");
  if (bias != nullptr) check_aligned(bias, "bias");
  GemmKey fused = key_of<GemmKey>(forward_gemm(N, IC, OC, layout), storage.operands,
                                  storage.outputs, CUBLASLT_EPILOGUE_GELU_AUX);
  if (bias != nullptr) fused.epilogue = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
  if (options_.fuse_epilogues && options_.fuse_gelu && OC % kAuxLdMultiple == 0 &&
      try_gemm(fused, weight, inp, out, out, 0.0f, bias, pre_gelu, stream)) {
    ++stats_.fused;
    return;
  }
  // Unfused: the GEMM with its bias into pre_gelu (that step counted by forward), then GELU.
  forward(pre_gelu, inp, weight, bias, N, IC, OC, layout, storage, stream);
  mixed::gelu_forward(out, pre_gelu, int64_t{N} * OC, storage.outputs, stream);
  ++stats_.unfused;
}

void LtMatmul::backward(void* dinp, void* dweight, void* dbias, const void* dout, const void* inp,
                        const void* weight, int N, int IC, int OC, WeightLayout layout,
                        Storage storage, cudaStream_t stream) {
  check_shape(N, IC, OC);
  if (N == 0) return;
  check_aligned(dout, "dout");
  if (dinp != nullptr) input_gemm(dinp, dout, weight, N, IC, OC, layout, storage, 1.0f, stream);
  weight_gradients(dweight, dbias, dout, inp, N, IC, OC, layout, storage, stream);
}

void LtMatmul::input_gradient(void* dinp, const void* dout, const void* weight, int N, int IC,
                              int OC, WeightLayout layout, Storage storage, cudaStream_t stream) {
  check_shape(N, IC, OC);
  DS_CHECK(dinp != nullptr, "LtMatmul::input_gradient needs a dinp buffer");
  if (N == 0) return;
  check_aligned(dout, "dout");
  input_gemm(dinp, dout, weight, N, IC, OC, layout, storage, 0.0f, stream);
}

void LtMatmul::input_gemm(void* dinp, const void* dout, const void* weight, int N, int IC, int OC,
                          WeightLayout layout, Storage storage, float beta, cudaStream_t stream) {
  check_aligned(dinp, "dinp");
  check_aligned(weight, "weight");
  gemm(key_of<GemmKey>(input_grad_gemm(N, IC, OC, layout), storage.operands, storage.outputs,
                       CUBLASLT_EPILOGUE_DEFAULT),
       weight, dout, dinp, beta, stream);
}

void LtMatmul::backward_gelu(void* dpre_gelu, void* dweight, void* dbias, const void* dout,
                             const void* inp, const void* weight, const void* pre_gelu, int N,
                             int IC, int OC, WeightLayout layout, Storage storage,
                             cudaStream_t stream) {
  check_shape(N, IC, OC);
  DS_CHECK(dpre_gelu != nullptr && pre_gelu != nullptr,
           "LtMatmul::backward_gelu needs dpre_gelu and pre_gelu");
  if (N == 0) return;
  check_aligned(dpre_gelu, "dpre_gelu");
  check_aligned(pre_gelu, "pre_gelu");
  check_aligned(dout, "dout");
  check_aligned(weight, "weight");
  const GemmKey plain = key_of<GemmKey>(input_grad_gemm(N, IC, OC, layout), storage.operands,
                                        storage.outputs, CUBLASLT_EPILOGUE_DEFAULT);
  GemmKey fused = plain;
  fused.epilogue = CUBLASLT_EPILOGUE_DGELU;
  // beta = 0: the epilogue's gelu' multiplies the whole GEMM result, so this WRITES.
  if (options_.fuse_epilogues && options_.fuse_gelu && IC % kAuxLdMultiple == 0 &&
      try_gemm(fused, weight, dout, dpre_gelu, dpre_gelu, 0.0f, nullptr, pre_gelu, stream)) {
    ++stats_.fused;
  } else {
    gemm(plain, weight, dout, dpre_gelu, 0.0f, stream);
    mixed::gelu_backward_inplace(dpre_gelu, pre_gelu, int64_t{N} * IC, storage.outputs, stream);
    ++stats_.unfused;
  }
  weight_gradients(dweight, dbias, dout, inp, N, IC, OC, layout, storage, stream);
}

void LtMatmul::weight_gradients(void* dweight, void* dbias, const void* dout, const void* inp,
                                int N, int IC, int OC, WeightLayout layout, Storage storage,
                                cudaStream_t stream) {
  if (dbias != nullptr) check_aligned(dbias, "dbias");
  const DType grads = storage.weight_grads;
  if (dweight == nullptr) {
    if (dbias != nullptr) {
      mixed::matmul_bias_backward(dbias, grads, dout, storage.operands, N, OC, stream);
    }
    return;
  }
  check_aligned(dweight, "dweight");
  check_aligned(inp, "inp");
  const bool in_out = layout == WeightLayout::kInOut;
  const void* a = in_out ? dout : inp;
  const void* b = in_out ? inp : dout;
  const GemmKey plain = key_of<GemmKey>(weight_grad_gemm(N, IC, OC, layout), storage.operands,
                                        grads, CUBLASLT_EPILOGUE_DEFAULT);
  if (dbias != nullptr && options_.fuse_epilogues) {
    GemmKey fused = plain;
    fused.epilogue = in_out ? CUBLASLT_EPILOGUE_BGRADA : CUBLASLT_EPILOGUE_BGRADB;
    if (plan(fused).supported) {
      // The epilogue writes the column sums (in the gradients' dtype) into the scratch; dbias +=
      // them separately, keeping the accumulate contract. dweight adds with beta = 1. In 16-bit
      // storage the sum is thus rounded twice (into the scratch, then into dbias), where the
      // unfused column sum rounds once.
      void* scratch = bias_scratch(size_t(OC) * dtype_size(grads));
      try_gemm(fused, a, b, dweight, dweight, 1.0f, scratch, nullptr, stream);
      mixed::add_inplace(dbias, scratch, OC, grads, stream);
      ++stats_.fused;
      return;
    }
  }
  gemm(plain, a, b, dweight, 1.0f, stream);
  if (dbias != nullptr) {
    mixed::matmul_bias_backward(dbias, grads, dout, storage.operands, N, OC, stream);
    ++stats_.unfused;
  }
}

}  // namespace ds::tensor::cuda
