// cuDNN's fused flash attention (its Hopper engines use the warpgroup tensor-core instructions
// that dstrain's own kernels, tensor_core_attention.h, do not) for the bf16 attention block:
// the same contracts as TensorCoreAttention's bf16 forward and backward, on the same layouts.
// Q, K and V are strided views of qkv [B,T,3C]; out and dout [B,T,C]; lse [B,NH,T] the natural-
// log log-sum-exp of each row's scaled scores, which both implementations save and read, so a
// forward of either pairs with a backward of either.
//
// The graphs are built with cuDNN's backend API (cudnn_graph.h) as NVIDIA's cudnn-frontend
// builds its causal SDPA, one execution plan per shape and direction, on first use. A shape and
// direction cuDNN has no engine for is refused once and not asked again (callers fall back); the
// library is loaded at run time (cudnn_library.h). DS_CUDNN_ATTENTION=0 keeps the attention on
// dstrain's kernels.
//
// One per stream; not thread-safe.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <array>
#include <map>
#include <memory>
#include <string>

#include "tensor/cuda/device_buffer.h"

struct cudnnContext;  // cuDNN's handle type (cudnnHandle_t), which its headers declare so too

namespace ds::tensor::cuda {

namespace cudnn {
class Plan;
}
struct CudnnLibrary;

class CudnnAttention {
 public:
  using Bf16 = __nv_bfloat16;

  // Whether the process should use cuDNN's attention: DS_CUDNN_ATTENTION is not 0 and a usable
  // library loads; *why says what decided (for the run's log).
  static bool wanted(std::string* why);

  CudnnAttention();
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // Whether this shape has (or gets now) a plan for the forward, and for the backward: each
  // direction is planned on its own, so either may run while the other is refused (a forward of
  // either implementation pairs with a backward of either). refusal() says what cuDNN refused.
  bool has_forward(int B, int T, int C, int NH);
  bool has_backward(int B, int T, int C, int NH);
  const std::string& refusal() const { return refusal_; }

  // out and lse written, as TensorCoreAttention::forward (bf16).
  void forward(Bf16* out, float* lse, const Bf16* qkv, int B, int T, int C, int NH,
               cudaStream_t stream);
  // dqkv written: the gradient of out (dout) with respect to qkv.
  void backward(Bf16* dqkv, const Bf16* dout, const Bf16* qkv, const Bf16* out, const float* lse,
                int B, int T, int C, int NH, cudaStream_t stream);

  // The engines chosen, per shape, for the run's log ("" before any).
  std::string report() const;

 private:
  using Key = std::array<int, 4>;  // B, T, C, NH
  struct Plans {
    std::unique_ptr<cudnn::Plan> forward, backward;
  };
  // The shape's plans, built on first use; a refused direction's is nullptr.
  Plans& plans_for(int B, int T, int C, int NH);
  // The handle, set to run on `stream`.
  cudnnContext* handle_on(cudaStream_t stream);
  void* workspace(int64_t bytes);

  const CudnnLibrary* library_;
  cudnnContext* handle_ = nullptr;
  std::map<Key, Plans> plans_;
  std::string refusal_;  // every refusal so far, "; " apart
  DeviceBuffer workspace_;
};

}  // namespace ds::tensor::cuda
