#include "model/embedding_layer.h"

namespace ds::model {

EmbeddingLayer::EmbeddingLayer(const LayerSpec& spec, const ModelLayout& layout,
                               const config::ModelConfig& m, tensor::Ops& ops)
    : Layer(spec, ops),
      C_(static_cast<int>(m.n_embd)),
      wte_(local_offset(layout, 0)),
      wpe_(spec.num_params > 1 ? local_offset(layout, 1) : -1) {}

void EmbeddingLayer::forward(const float* w, const MicroBatch& mb, const float*, float* y, float*) {
  ops_.encoder_forward(y, mb.tokens, w + wte_, wpe_ < 0 ? nullptr : w + wpe_, mb.B, mb.T, C_);
}

void EmbeddingLayer::backward(const float*, float* dw, const MicroBatch& mb, const float*,
                              const float* dy, float*, float*) {
  ops_.encoder_backward(dw + wte_, wpe_ < 0 ? nullptr : dw + wpe_, dy, mb.tokens, mb.host_tokens,
                        mb.B, mb.T, C_);
}

}  // namespace ds::model
