// The GPT kernels of tensor/cuda/kernels.h for any storage dtype: tensors stored as f32, bf16 or
// f16 (the `dtype` argument, one per call), every value widened to fp32 on load, all arithmetic
// and every reduction in fp32 (the cross-entropy row sum in double, as on the CPU), and each
// result rounded to the storage dtype once, to nearest even, when it is stored. They are the
// instances of op_kernels.cuh's storage-generic kernels, and at f32 they are kernels.h's.
//
// Arguments are those of kernels.h in the same order, with the DType before the stream. The
// casts between fp32 and the storage dtypes (to_f32, from_f32, add_f32_into: round to nearest
// even) are cast_kernels.h's. The contracts are kernels.h's:
// - Nothing here allocates; callers own all device memory.
// - Every backward ACCUMULATES (+=) into its gradients, in their storage dtype (read, add in
//   fp32, round once); the exceptions say so (softmax_cross_entropy, gelu_backward_inplace).
// - Deterministic: no float atomics; every reduction is done by a fixed set of threads in a
//   fixed order.
// - Queued on `stream`; launch errors throw ds::Error at once.
//
// Which tensors are in `dtype` and which are fp32:
// - activations, parameters, parameter and activation gradients: `dtype`;
// - layernorm's mean and rstd, the per-position losses: fp32;
// - the embedding gradients (encoder_backward's dwte, dwpe): fp32. A token's positions are added
//   one after another (kernels.h), so a token repeated k times would round k times into a bf16
//   row; in fp32 it is an ordinary fp32 sum, which the caller casts or adds into a bf16 gradient
//   buffer once per step (cast_kernels.h: from_f32, add_f32_into).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "tensor/dtype.h"

namespace ds::tensor::cuda {
class DeviceBuffer;
class TokenBuckets;
}  // namespace ds::tensor::cuda

namespace ds::tensor::cuda::mixed {

// out = wte[token] + wpe[t] (wpe nullable), summed in fp32 and rounded once.
void encoder_forward(void* out, const int32_t* tokens, const void* wte, const void* wpe, int B,
                     int T, int C, DType dtype, cudaStream_t stream);
// dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:] unless dwpe is nullptr, in the
// CPU's order as kernels.h's, for the ids `buckets` was last built from. The gradients are fp32
// (see above); dout is in `dtype`.
void encoder_backward(float* dwte, float* dwpe, const void* dout, int B, int T, int C,
                      const TokenBuckets& buckets, DType dtype, cudaStream_t stream);

// One warp per row; mean and rstd (fp32, nullable) are those of the stored (rounded) input.
void layernorm_forward(void* out, float* mean, float* rstd, const void* inp, const void* weight,
                       const void* bias, int N, int C, float eps, DType dtype, cudaStream_t stream);
// fp32 input and parameters normalised into a bf16 output: the fp32 result rounded once (the bf16
// sublayers' GEMM operand).
void layernorm_forward_to_bf16(__nv_bfloat16* out, float* mean, float* rstd, const float* inp,
                               const float* weight, const float* bias, int N, int C, float eps,
                               cudaStream_t stream);
// dinp = dresidual + the input gradient (dresidual == dinp: dinp +=), dweight and dbias += theirs
// (all in `dtype`), in one pass over dout and inp. `partials`: layernorm_partial_floats(C) floats
// of device memory for the blocks' column sums.
int64_t layernorm_partial_floats(int C);
// `buffer` grown to layernorm_partial_floats(C) (once per width), as the partials.
float* layernorm_partials(DeviceBuffer& buffer, int C);
void layernorm_backward(void* dinp, const void* dresidual, void* dweight, void* dbias,
                        const void* dout, const void* inp, const void* weight, const float* mean,
                        const float* rstd, int N, int C, float* partials, DType dtype,
                        cudaStream_t stream);
// Where a layernorm backward can hand its dinp [N, C] on to the backward of the sublayer below,
// which would otherwise read it again: rounded to bf16 into `copy` ([N, C], 16-byte aligned: that
// sublayer's GEMM operand) and its column sums written into `sums` ([C]: the bias gradient of
// that sublayer's projection), in the same pass.
struct GradientHandOff {
  __nv_bfloat16* copy;
  float* sums;
};
// The same in fp32 from a bf16 dout (a bf16 GEMM's input gradient), widened exactly; and dinp
// handed on to `hand_off` (nullptr: not) where the row kernels apply (layernorm_row_kernels.cuh).
// Returns whether it was handed on.
bool layernorm_backward_from_bf16(float* dinp, const float* dresidual, float* dweight, float* dbias,
                                  const __nv_bfloat16* dout, const float* inp, const float* weight,
                                  const float* mean, const float* rstd, int N, int C,
                                  float* partials, const GradientHandOff* hand_off,
                                  cudaStream_t stream);

// GELU, tanh approximation (as GPT-2 and tensor/cpu). out may alias inp; dinp += gelu'(inp) dout.
void gelu_forward(void* out, const void* inp, int64_t N, DType dtype, cudaStream_t stream);
void gelu_backward(void* dinp, const void* inp, const void* dout, int64_t N, DType dtype,
                   cudaStream_t stream);

// out = a + b (out may alias a or b); dst += src.
void residual_forward(void* out, const void* a, const void* b, int64_t N, DType dtype,
                      cudaStream_t stream);
void add_inplace(void* dst, const void* src, int64_t N, DType dtype, cudaStream_t stream);

// Forward and backward of softmax cross-entropy in one pass per row (one block per row):
// losses[n] = logsumexp(logits[n]) - logits[n][targets[n]] (fp32), and, unless dlogits is
// nullptr, dlogits = (softmax(logits) - onehot(targets)) * dloss — WRITTEN, not accumulated,
// in `dtype`. dlogits may alias logits (the training step's in-place use: the logits are read
// before they are overwritten). Ignored targets (cpu::kIgnoreTarget) give loss 0 and a zero
// gradient row. With dlogits == nullptr only the losses are computed (evaluation). Rows are `ld`
// elements apart in both (ld >= V; the elements past V are neither read nor written).
void softmax_cross_entropy(float* losses, void* dlogits, const void* logits, const int32_t* targets,
                           float dloss, int N, int V, int64_t ld, DType dtype, cudaStream_t stream);

// The separate steps behind LtMatmul's unfused paths (lt_matmul.h), where cuBLASLt offers no
// fused epilogue for a shape:
// out[n,:] = row for every n (a bias the GEMM then adds to, with beta = 1);
void broadcast_rows(void* out, const void* row, int N, int C, DType dtype, cudaStream_t stream);
// dbias[c] += sum over n of dout[n,c] (a fixed-order column sum);
void matmul_bias_backward(void* dbias, const void* dout, int N, int OC, DType dtype,
                          cudaStream_t stream);
// The same with the gradient in its own dtype (fp32 gradients of 16-bit activations), the sum
// kept in fp32 and rounded once into dbias.
void matmul_bias_backward(void* dbias, DType dbias_dtype, const void* dout, DType dout_dtype, int N,
                          int OC, cudaStream_t stream);
// dbias (fp32) += the column sums of dout [N, C] (fp32, bf16 or f16), as matmul_bias_backward
// but in two fixed-order passes that read dout in 16-byte chunks (op_kernels.cuh,
// bias_partials_kernel), with `partials` grown to bias_partial_floats(N, C) floats for the
// first's sums, where dout is 16-byte aligned and C a multiple of 8; otherwise through
// matmul_bias_backward.
int64_t bias_partial_floats(int N, int C);
void bias_gradient(float* dbias, const void* dout, DType dout_dtype, int N, int C,
                   DeviceBuffer& partials, cudaStream_t stream);
// dout (fp32) rounded to bf16 into `copy` (grown to fit) as rounded_to_bf16, and, unless dbias
// is nullptr, bias_gradient's sums of it, in one pass where bias_gradient takes it. Returns the
// copy.
const void* rounded_with_bias_gradient(float* dbias, const float* dout, int N, int C,
                                       DeviceBuffer& copy, DeviceBuffer& partials,
                                       cudaStream_t stream);
// d = gelu'(inp) * d, in place — WRITES (the GELU backward after a GEMM that wrote d).
void gelu_backward_inplace(void* d, const void* inp, int64_t N, DType dtype, cudaStream_t stream);

}  // namespace ds::tensor::cuda::mixed
