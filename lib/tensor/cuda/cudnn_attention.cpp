#include "tensor/cuda/cudnn_attention.h"

#include <cudnn_graph.h>
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <vector>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cudnn_graph.h"
#include "tensor/cuda/cudnn_library.h"
#include "util/env.h"
#include "util/error.h"

namespace ds::tensor::cuda {

namespace {

using cudnn::Descriptor;
using cudnn::GraphBuilder;
using cudnn::Shape;

// The unique ids the variant packs name the tensors in memory by.
enum Uid : int64_t {
  kQ = 1,
  kK,
  kV,
  kOut,
  kStats,
  kScale,
  kMasked,
  kDout,
  kDq,
  kDk,
  kDv,
  kOne,     // backward: 1, by value (the frontend's dropout-free scale of the row sums)
  kRowDot,  // backward: Σ dout·out per row, fp32 [B, NH, T, 1], in the workspace
  kDqSums,  // backward: dQ accumulated in fp32 [B, NH, T, hs], in the workspace
};

// The tensors' shapes at one (B, T, C, NH).
struct Shapes {
  // [B, NH, T, hs] views of qkv's Q, K and V (K and V also transposed: [B, NH, hs, T]), and of
  // out and dout.
  Shape q, transposed, out;
  // Intermediates: the [B, NH, T, T] scores and probabilities, and their transposes (as the
  // backward's products read them); the [B, NH, T, 1] row statistics; dout · out before its row
  // sums (with the frontend's strides, which overlap: a virtual tensor's are not used); dQ's fp32
  // sums.
  Shape scores, scores_transposed, rows, dout_out, dq_sums;
  Shapes(int B, int T, int C, int NH) {
    const int64_t b = B, t = T, c = C, h = NH, hs = C / NH;
    q = {{b, h, t, hs}, {t * 3 * c, hs, 3 * c, 1}};
    transposed = {{b, h, hs, t}, {t * 3 * c, hs, 1, 3 * c}};
    out = {{b, h, t, hs}, {t * c, hs, c, 1}};
    scores = {{b, h, t, t}, {h * t * t, t * t, t, 1}};
    scores_transposed = {{b, h, t, t}, {h * t * t, t * t, 1, t}};
    rows = {{b, h, t, 1}, {h * t, t, 1, 1}};
    dout_out = {{b, h, t, hs}, {h * t * hs, t * hs, h * hs, 1}};
    dq_sums = {{b, h, t, hs}, {h * t * hs, t * hs, hs, 1}};
  }
  int64_t row_dot_bytes() const { return rows.dims[0] * rows.strides[0] * int64_t{sizeof(float)}; }
  int64_t dq_sums_bytes() const {
    return dq_sums.dims[0] * dq_sums.strides[0] * int64_t{sizeof(float)};
  }
};

// The scores masked for causal attention as the frontend's composite diagonal band mask does:
// scores where row index >= column index, else the by-value kMasked (-inf).
const Descriptor& causal(GraphBuilder& g, const Descriptor& scores, const Shapes& s) {
  const Descriptor& row = g.virtual_tensor(s.scores, CUDNN_DATA_INT32);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scores, nullptr, row, {.axis = 2});
  const Descriptor& column = g.virtual_tensor(s.scores, CUDNN_DATA_INT32);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scores, nullptr, column, {.axis = 3});
  const Descriptor& keep = g.virtual_tensor(s.scores, CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, row, &column, keep, {.precision = CUDNN_DATA_BOOLEAN});
  const Descriptor& masked = g.virtual_tensor(s.scores);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, scores, &g.scalar(kMasked), masked, {.t = &keep});
  return masked;
}

// The scaled scores of Q Kᵀ (K given transposed).
const Descriptor& scaled_scores(GraphBuilder& g, const Descriptor& q, const Descriptor& k,
                                const Descriptor& scale, const Shapes& s) {
  const Descriptor& product = g.virtual_tensor(s.scores);
  g.matmul(q, k, product);
  const Descriptor& scaled = g.virtual_tensor(s.scores);
  g.pointwise(CUDNN_POINTWISE_MUL, product, &scale, scaled);
  return scaled;
}

// The forward: out = softmax(scaled, masked scores) V, and the statistics max + log Σ exp.
void build_forward(GraphBuilder& g, const Shapes& s) {
  const Descriptor& q = g.tensor(kQ, s.q, CUDNN_DATA_BFLOAT16);
  const Descriptor& k = g.tensor(kK, s.transposed, CUDNN_DATA_BFLOAT16);
  const Descriptor& scores = causal(g, scaled_scores(g, q, k, g.scalar(kScale), s), s);
  const Descriptor& max = g.virtual_tensor(s.rows);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, scores, max);
  const Descriptor& shifted = g.virtual_tensor(s.scores);
  g.pointwise(CUDNN_POINTWISE_SUB, scores, &max, shifted);
  const Descriptor& exps = g.virtual_tensor(s.scores);
  g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, exps);
  const Descriptor& sum = g.virtual_tensor(s.rows);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, exps, sum);
  const Descriptor& log_sum = g.virtual_tensor(s.rows);
  g.pointwise(CUDNN_POINTWISE_LOG, sum, nullptr, log_sum);
  g.pointwise(CUDNN_POINTWISE_ADD, max, &log_sum, g.tensor(kStats, s.rows, CUDNN_DATA_FLOAT));
  // In the products' dtype: cuDNN's fused engines take the second product's A as i/o type.
  const Descriptor& probs = g.virtual_tensor(s.scores, CUDNN_DATA_BFLOAT16);
  g.pointwise(CUDNN_POINTWISE_DIV, exps, &sum, probs);
  g.matmul(probs, g.tensor(kV, s.q, CUDNN_DATA_BFLOAT16),
           g.tensor(kOut, s.out, CUDNN_DATA_BFLOAT16));
}

// The backward, node for node as the frontend's (no dropout, bias or padding): the row sums
// Σ dout·out; the probabilities recomputed from the saved statistics; dV = Pᵀ dout; dS =
// P (dout Vᵀ − row sums) · scale; dK = dSᵀ Q; dQ = dS K, summed in fp32 in the workspace first.
void build_backward(GraphBuilder& g, const Shapes& s) {
  const Descriptor& q = g.tensor(kQ, s.q, CUDNN_DATA_BFLOAT16);
  const Descriptor& k_transposed = g.tensor(kK, s.transposed, CUDNN_DATA_BFLOAT16);
  const Descriptor& v_transposed = g.tensor(kV, s.transposed, CUDNN_DATA_BFLOAT16);
  const Descriptor& out = g.tensor(kOut, s.out, CUDNN_DATA_BFLOAT16);
  const Descriptor& dout = g.tensor(kDout, s.out, CUDNN_DATA_BFLOAT16);
  const Descriptor& stats = g.tensor(kStats, s.rows, CUDNN_DATA_FLOAT);
  const Descriptor& scale = g.scalar(kScale);

  const Descriptor& dout_out = g.virtual_tensor(s.dout_out);
  g.pointwise(CUDNN_POINTWISE_MUL, dout, &out, dout_out);
  const Descriptor& dot = g.virtual_tensor(s.rows);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, dout_out, dot);
  const Descriptor& row_dot = g.tensor(kRowDot, s.rows, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_MUL, dot, &g.scalar(kOne), row_dot);

  const Descriptor& scores = scaled_scores(g, q, k_transposed, scale, s);
  const Descriptor& shifted = g.virtual_tensor(s.scores);
  g.pointwise(CUDNN_POINTWISE_SUB, scores, &stats, shifted);
  const Descriptor& masked = causal(g, shifted, s);
  const Descriptor& probs = g.virtual_tensor(s.scores);
  g.pointwise(CUDNN_POINTWISE_EXP, masked, nullptr, probs);
  const Descriptor& probs_transposed = g.virtual_tensor(s.scores_transposed, CUDNN_DATA_BFLOAT16);
  g.reshape(probs, probs_transposed);
  g.matmul(probs_transposed, dout, g.tensor(kDv, s.q, CUDNN_DATA_BFLOAT16));

  const Descriptor& dprobs = g.virtual_tensor(s.scores);
  g.matmul(dout, v_transposed, dprobs);
  const Descriptor& centred = g.virtual_tensor(s.scores);
  g.pointwise(CUDNN_POINTWISE_SUB, dprobs, &row_dot, centred);
  const Descriptor& dscores = g.virtual_tensor(s.scores);
  g.pointwise(CUDNN_POINTWISE_MUL, centred, &probs, dscores);
  const Descriptor& dscaled = g.virtual_tensor(s.scores);
  g.pointwise(CUDNN_POINTWISE_MUL, dscores, &scale, dscaled);
  const Descriptor& dscaled_transposed = g.virtual_tensor(s.scores_transposed, CUDNN_DATA_BFLOAT16);
  g.reshape(dscaled, dscaled_transposed);
  g.matmul(dscaled_transposed, q, g.tensor(kDk, s.q, CUDNN_DATA_BFLOAT16));

  const Descriptor& k = g.virtual_tensor(s.q);  // fp32, as the frontend's (and PyTorch's) graph
  g.reshape(k_transposed, k);
  const Descriptor& dq_sums = g.tensor(kDqSums, s.dq_sums, CUDNN_DATA_FLOAT);
  g.matmul(dscaled, k, dq_sums);
  g.pointwise(CUDNN_POINTWISE_IDENTITY, dq_sums, nullptr, g.tensor(kDq, s.q, CUDNN_DATA_BFLOAT16));
}

// The by-value scalars both graphs read, which must live until their execution returns: the
// softmax scale, the value the mask writes (-inf, as the frontend gives cuDNN from 9.10 on; the
// lowest finite float before), and the backward's 1.
struct ByValue {
  float scale, masked, one = 1.0f;
  ByValue(int head_size, size_t version)
      : scale(1.0f / std::sqrt(static_cast<float>(head_size))),
        masked(version < 91000 ? std::numeric_limits<float>::lowest()
                               : -std::numeric_limits<float>::infinity()) {}
};

}  // namespace

bool CudnnAttention::wanted(std::string* why) {
  if (!env_switch("DS_CUDNN_ATTENTION", "using cuDNN's attention where it loads")) {
    *why = "DS_CUDNN_ATTENTION=0";
    return false;
  }
  std::string missing;
  const CudnnLibrary* library = CudnnLibrary::get(&missing);
  if (library == nullptr) {
    *why = missing;
    return false;
  }
  *why = fmt::format("cuDNN {} from {}", cudnn_version_name(library->version), library->path);
  return true;
}

CudnnAttention::CudnnAttention() : library_(CudnnLibrary::get()) {
  DS_CHECK(library_ != nullptr, "cuDNN's attention without a usable cuDNN library");
  cudnn::check(*library_, library_->create(&handle_), "creating a handle");
}

CudnnAttention::~CudnnAttention() {
  plans_.clear();
  if (handle_ != nullptr) library_->destroy(handle_);
}

CudnnAttention::Plans& CudnnAttention::plans_for(int B, int T, int C, int NH) {
  const Key key{B, T, C, NH};
  if (auto found = plans_.find(key); found != plans_.end()) return found->second;
  const Shapes shapes(B, T, C, NH);
  const auto plan = [&](const char* direction, auto build) -> std::unique_ptr<cudnn::Plan> {
    try {
      GraphBuilder graph(*library_);
      build(graph, shapes);
      return std::make_unique<cudnn::Plan>(graph, handle_);
    } catch (const Error& e) {
      refusal_ += fmt::format("{}{} at B={} T={} C={} NH={}: {}", refusal_.empty() ? "" : "; ",
                              direction, B, T, C, NH, e.what());
      return nullptr;
    }
  };
  const auto refuse = [&](const char* direction, const char* why) {
    refusal_ += fmt::format("{}{} at T={}: {}", refusal_.empty() ? "" : "; ", direction, T, why);
  };
  Plans plans;
  // The frontend refuses one-token sequences (the backward always, the causal forward before
  // 9.10), and up to 9.15.0 adds a padding mask to the backward where T is not a multiple of 128,
  // which is not built here.
  if (T == 1) {
    refuse("forward and backward", "cuDNN's attention needs two tokens or more");
  } else {
    plans.forward = plan("forward", build_forward);
    if (library_->version <= 91500 && T % 128 != 0) {
      refuse("backward", "cuDNN 9.15.0 and earlier need T a multiple of 128");
    } else {
      plans.backward = plan("backward", build_backward);
    }
  }
  return plans_.emplace(key, std::move(plans)).first->second;
}

bool CudnnAttention::has_forward(int B, int T, int C, int NH) {
  return plans_for(B, T, C, NH).forward != nullptr;
}

bool CudnnAttention::has_backward(int B, int T, int C, int NH) {
  return plans_for(B, T, C, NH).backward != nullptr;
}

cudnnHandle_t CudnnAttention::handle_on(cudaStream_t stream) {
  cudnn::check(*library_, library_->set_stream(handle_, stream), "setting the stream");
  return handle_;
}

void* CudnnAttention::workspace(int64_t bytes) {
  workspace_.grow(static_cast<size_t>(bytes));
  return workspace_.data();
}

void CudnnAttention::forward(Bf16* out, float* lse, const Bf16* qkv, int B, int T, int C, int NH,
                             cudaStream_t stream) {
  const cudnn::Plan* plan = plans_for(B, T, C, NH).forward.get();
  DS_CHECK(plan != nullptr, "cuDNN refused the attention's forward: {}", refusal_);
  const cudnnHandle_t handle = handle_on(stream);
  ByValue values(C / NH, library_->version);
  auto* q = const_cast<Bf16*>(qkv);
  plan->execute(handle, {kQ, kK, kV, kOut, kStats, kScale, kMasked},
                {q, q + C, q + 2 * C, out, lse, &values.scale, &values.masked},
                workspace(plan->workspace_bytes()));
}

void CudnnAttention::backward(Bf16* dqkv, const Bf16* dout, const Bf16* qkv, const Bf16* out,
                              const float* lse, int B, int T, int C, int NH, cudaStream_t stream) {
  const cudnn::Plan* plan = plans_for(B, T, C, NH).backward.get();
  DS_CHECK(plan != nullptr, "cuDNN refused the attention's backward: {}", refusal_);
  const cudnnHandle_t handle = handle_on(stream);
  // The workspace: the plan's, then dQ's fp32 sums, then the row sums (each 256-byte aligned).
  const Shapes shapes(B, T, C, NH);
  const auto aligned = [](int64_t bytes) { return (bytes + 255) / 256 * 256; };
  const int64_t plan_bytes = aligned(plan->workspace_bytes());
  const int64_t dq_bytes = aligned(shapes.dq_sums_bytes());
  auto* space =
      static_cast<char*>(workspace(plan_bytes + dq_bytes + aligned(shapes.row_dot_bytes())));
  if (library_->version < 90600) {  // later versions zero dQ's sums themselves
    DS_CUDA_CALL(cudaMemsetAsync(space + plan_bytes, 0, static_cast<size_t>(dq_bytes), stream));
  }
  ByValue values(C / NH, library_->version);
  auto* q = const_cast<Bf16*>(qkv);
  plan->execute(
      handle,
      {kQ, kK, kV, kOut, kDout, kStats, kScale, kMasked, kOne, kDq, kDk, kDv, kDqSums, kRowDot},
      {q, q + C, q + 2 * C, const_cast<Bf16*>(out), const_cast<Bf16*>(dout),
       const_cast<float*>(lse), &values.scale, &values.masked, &values.one, dqkv, dqkv + C,
       dqkv + 2 * C, space + plan_bytes, space + plan_bytes + dq_bytes},
      space);
}

std::string CudnnAttention::report() const {
  std::string report;
  for (const auto& [key, plans] : plans_) {
    const auto engine = [](const std::unique_ptr<cudnn::Plan>& plan) {
      return plan != nullptr ? plan->engine() : std::string("refused");
    };
    report +=
        fmt::format("{}B={} T={} C={} NH={}: forward {}, backward {}", report.empty() ? "" : "; ",
                    key[0], key[1], key[2], key[3], engine(plans.forward), engine(plans.backward));
  }
  return report;
}

}  // namespace ds::tensor::cuda
