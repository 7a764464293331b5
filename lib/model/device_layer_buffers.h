// A model on a device served from LayerBuffers in host memory: each layer's fp32 weights are
// copied to the device when the model asks for them, and the gradient the layer's backward
// accumulates on the device is added into the host's gradient when the backward is done.
// The host side (the ZeRO engine's buffers: gathers, casts, reductions, the optimizer) runs
// unchanged, as in ZeRO-Offload with the optimizer on the CPU, and sees the same calls in the
// same order as from a model on the CPU. It costs a copy of every layer's weights per forward
// and backward and of its gradient per backward, on the ops' stream with the host waiting:
// the price of running every ZeRO stage on a GPU before the engine's states live there.
//
// One layer at a time is resident (the model runs one layer at a time, and asks for the
// tied head's embedding beside the head), so the device holds the largest layer's weights and
// gradient, plus the tied embedding and its gradient when the head is tied.
#pragma once

#include <cstdint>

#include "model/layer_buffers.h"
#include "model/model_layout.h"
#include "tensor/memory.h"
#include "tensor/ops.h"

namespace ds::model {

class DeviceLayerBuffers final : public LayerBuffers {
 public:
  // `host` serves fp32 weights and gradient accumulators in host memory; `ops` runs the model.
  DeviceLayerBuffers(const ModelLayout& layout, tensor::Ops& ops, LayerBuffers& host);

  const float* weights(int layer) override;
  float* grads(int layer) override;
  void forward_done(int layer) override;
  void backward_done(int layer) override;
  const float* tied_wte(int64_t offset_in_layer0) override;
  float* tied_dwte(int64_t offset_in_layer0) override;

 private:
  // host[0, n) += the gradient at `device` (n floats on the ops' device).
  void add_to_host(float* host, const float* device, int64_t n);

  const ModelLayout& layout_;
  tensor::Ops& ops_;
  LayerBuffers& host_;
  int64_t wte_numel_;  // the tied head's weight: the embedding layer's first parameter
  tensor::Buffer weights_, grads_, tied_wte_, tied_dwte_;  // on the device
  int grads_layer_ = -1;                                   // whose gradient grads_ holds
  float* host_grads_ = nullptr;                            // and where it goes
  float* host_tied_dwte_ = nullptr;  // where tied_dwte_ goes, while the head's backward runs
  tensor::Buffer staging_;           // a gradient on its way to the host (page-locked)
};

}  // namespace ds::model
