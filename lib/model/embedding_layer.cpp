#include "model/embedding_layer.h"

#include "tensor/cpu/kernels.h"
#include "tensor/cpu/llama_kernels.h"

namespace ds::model {

namespace cpu = tensor::cpu;

EmbeddingLayer::EmbeddingLayer(const LayerSpec& spec, const ModelLayout& layout,
                               const config::ModelConfig& m)
    : Layer(spec),
      C_(static_cast<int>(m.n_embd)),
      wte_(local_offset(layout, 0)),
      wpe_(spec.num_params > 1 ? local_offset(layout, 1) : -1) {}

void EmbeddingLayer::forward(const float* w, const MicroBatch& mb, const float*, float* y, float*) {
  if (wpe_ < 0) {
    cpu::embedding_forward(y, mb.tokens, w + wte_, mb.B, mb.T, C_);
  } else {
    cpu::encoder_forward(y, mb.tokens, w + wte_, w + wpe_, mb.B, mb.T, C_);
  }
}

void EmbeddingLayer::backward(const float*, float* dw, const MicroBatch& mb, const float*,
                              const float* dy, float*, float*) {
  if (wpe_ < 0) {
    cpu::embedding_backward(dw + wte_, dy, mb.tokens, mb.B, mb.T, C_);
  } else {
    cpu::encoder_backward(dw + wte_, dw + wpe_, dy, mb.tokens, mb.B, mb.T, C_);
  }
}

}  // namespace ds::model
