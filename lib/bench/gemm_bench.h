// dsbench gemm: the matrix products of one GPT-2 training step on one GPU, each timed through the
// code the model runs them on (tensor/cuda/lt_matmul.h for the blocks, the classifier's GEMMs for
// the LM head), in the storage forms a bf16 run could give them:
// - "f32 → bf16": fp32 operands that cuBLASLt rounds to bf16 (CUBLAS_COMPUTE_32F_FAST_16BF), what
//   a bf16 run's matmuls did before they rounded their operands into bf16 copies (bf16_matmul.h);
// - "bf16": bf16 operands and products with fp32 weight gradients, what the bf16 MLP and the bf16
//   matmuls (tensor/cuda/bf16_mlp.h, bf16_matmul.h) give their products;
// - "tf32": fp32 operands rounded to TF32, what fp16 runs use;
// and for the LM head with the vocabulary odd (GPT-2's 50257) or padded, in the logits' row
// length and in the GEMMs' dimension, then the whole classifier op as a bf16 run runs it
// (tensor/cuda/classifier.h). Each line gives ms per call and TFLOP/s, forward and backward
// (input, weight and bias gradients): how much the storage of the activations costs the matmuls.
#pragma once

#include <string>

namespace ds::bench {

struct GemmBenchOptions {
  int tokens = 16384;  // B·T of a micro-batch: GPT-2's B = 16, T = 1024
  int embd = 768;
  int vocab = 50257;
  int iters = 20;
  int warmup = 3;
};

// Prints the table; throws ds::Error when there is no GPU or the build has no CUDA. Returns 0.
int run_gemm_bench(const GemmBenchOptions& options);

}  // namespace ds::bench
