#include "model/gpt.h"

#include <cstring>

#include "model/embedding_layer.h"
#include "model/head_layer.h"
#include "util/error.h"

namespace ds::model {

using tensor::Buffer;
using tensor::MemoryCategory;

Gpt::Gpt(const config::ModelConfig& config) : config_(config), layout_(build_layout(config)) {
  for (const LayerSpec& spec : layout_.layers) {
    switch (spec.kind) {
      case LayerKind::kEmbedding:
        layers_.push_back(std::make_unique<EmbeddingLayer>(spec, layout_, config_));
        break;
      case LayerKind::kBlock:
        layers_.push_back(std::make_unique<BlockLayer>(spec, layout_, config_, &scratch_));
        break;
      case LayerKind::kHead:
        layers_.push_back(std::make_unique<HeadLayer>(spec, layout_, config_));
        break;
    }
  }
  wte_local_ = layout_.param("transformer.wte.weight").offset - layout_.layers[0].offset;
  activations_.resize(layers_.size());
}

void Gpt::reserve(int B, int T) {
  DS_CHECK(T <= config_.block_size, "sequence length {} exceeds block_size {}", T,
           config_.block_size);
  if (B <= reserved_B_ && T <= reserved_T_) return;
  B = std::max(B, reserved_B_);
  T = std::max(T, reserved_T_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->reserve(B, T);
    activations_[i] =
        Buffer(sizeof(float) * layers_[i]->output_size(B, T), MemoryCategory::kActivations);
  }
  const size_t hidden = sizeof(float) * int64_t{B} * T * config_.n_embd;
  grad_a_ = Buffer(hidden, MemoryCategory::kActivations);
  grad_b_ = Buffer(hidden, MemoryCategory::kActivations);
  reserved_B_ = B;
  reserved_T_ = T;
}

double Gpt::forward(const MicroBatch& mb, LayerBuffers& buffers) {
  reserve(mb.B, mb.T);
  const int64_t n = int64_t{mb.B} * mb.T;
  for (int64_t i = 0; i < n; ++i) {
    const bool tok_ok = mb.tokens[i] >= 0 && mb.tokens[i] < config_.vocab_size;
    const bool tgt_ok = mb.targets[i] >= 0 && mb.targets[i] < config_.vocab_size;
    if (!tok_ok || !tgt_ok) {
      throw UsageError(
          fmt::format("token id {} at position {} of the batch is outside the "
                      "vocabulary of {} tokens",
                      tok_ok ? mb.targets[i] : mb.tokens[i], i, config_.vocab_size));
    }
  }
  const float* x = nullptr;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = *layers_[i];
    const int index = static_cast<int>(i);
    if (auto* head = dynamic_cast<HeadLayer*>(&layer); head && head->tied()) {
      head->bind_tied_embedding(buffers.weights(0) + wte_local_, nullptr);
    }
    float* y = activations_[i].as<float>();
    layer.forward(buffers.weights(index), mb, x, y);
    buffers.forward_done(index);
    x = y;
  }
  const float* losses = activations_.back().as<float>();
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += losses[i];
  return sum / static_cast<double>(n);
}

void Gpt::backward(const MicroBatch& mb, LayerBuffers& buffers) {
  const size_t hidden = sizeof(float) * int64_t{mb.B} * mb.T * config_.n_embd;
  float* dy = nullptr;  // gradient of the current layer's output
  float* dx = grad_a_.as<float>();
  float* spare = grad_b_.as<float>();
  for (size_t i = layers_.size(); i-- > 0;) {
    Layer& layer = *layers_[i];
    const int index = static_cast<int>(i);
    if (auto* head = dynamic_cast<HeadLayer*>(&layer); head && head->tied()) {
      head->bind_tied_embedding(buffers.weights(0) + wte_local_, buffers.grads(0) + wte_local_);
    }
    const float* x = i > 0 ? activations_[i - 1].as<float>() : nullptr;
    float* dx_now = i > 0 ? dx : nullptr;
    if (dx_now) std::memset(dx_now, 0, hidden);
    layer.backward(buffers.weights(index), buffers.grads(index), mb, x, dy, dx_now);
    buffers.backward_done(index);
    dy = dx_now;
    std::swap(dx, spare);
  }
}

double Gpt::forward(const float* params, const MicroBatch& mb) {
  FlatLayerBuffers buffers(layout_, params, nullptr);
  return forward(mb, buffers);
}

void Gpt::backward(const float* params, float* grads, const MicroBatch& mb) {
  FlatLayerBuffers buffers(layout_, params, grads);
  backward(mb, buffers);
}

const float* Gpt::losses() const { return activations_.back().as<float>(); }

}  // namespace ds::model
