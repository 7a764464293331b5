#include "model/device_layer_buffers.h"

#include <algorithm>

#include "tensor/cpu/kernels.h"
#include "util/error.h"

namespace ds::model {

using tensor::MemoryCategory;

DeviceLayerBuffers::DeviceLayerBuffers(const ModelLayout& layout, tensor::Ops& ops,
                                       LayerBuffers& host)
    : layout_(layout),
      ops_(ops),
      host_(host),
      wte_numel_(layout.params[layout.layers[0].first_param].numel) {
  int64_t largest = 0;
  for (const LayerSpec& spec : layout.layers) largest = std::max(largest, spec.numel);
  weights_ = ops_.allocate_floats(largest, MemoryCategory::kParameters);
  grads_ = ops_.allocate_floats(largest, MemoryCategory::kGradients);
  staging_ = ops_.allocate_staging(sizeof(float) * static_cast<size_t>(largest),
                                   MemoryCategory::kCommunication);
}

const float* DeviceLayerBuffers::weights(int layer) {
  const int64_t n = layout_.layers[layer].numel;
  ops_.upload(weights_.data(), host_.weights(layer), sizeof(float) * static_cast<size_t>(n));
  return weights_.as<float>();
}

float* DeviceLayerBuffers::grads(int layer) {
  DS_CHECK(grads_layer_ < 0 || grads_layer_ == layer,
           "layer {}'s gradient asked for while layer {}'s backward is not done", layer,
           grads_layer_);
  if (grads_layer_ != layer) {
    host_grads_ = host_.grads(layer);
    ops_.fill_zero(grads_.as<float>(), layout_.layers[layer].numel);
    grads_layer_ = layer;
  }
  return grads_.as<float>();
}

void DeviceLayerBuffers::forward_done(int layer) { host_.forward_done(layer); }

void DeviceLayerBuffers::backward_done(int layer) {
  if (host_tied_dwte_ != nullptr) {  // the tied head's share of the embedding's gradient
    add_to_host(host_tied_dwte_, tied_dwte_.as<float>(), wte_numel_);
    host_tied_dwte_ = nullptr;
  }
  if (grads_layer_ == layer) {
    add_to_host(host_grads_, grads_.as<float>(), layout_.layers[layer].numel);
    grads_layer_ = -1;
    host_grads_ = nullptr;
  }
  host_.backward_done(layer);
}

const float* DeviceLayerBuffers::tied_wte(int64_t offset_in_layer0) {
  if (tied_wte_.empty()) {
    tied_wte_ = ops_.allocate_floats(wte_numel_, MemoryCategory::kParameters);
  }
  ops_.upload(tied_wte_.data(), host_.tied_wte(offset_in_layer0),
              sizeof(float) * static_cast<size_t>(wte_numel_));
  return tied_wte_.as<float>();
}

float* DeviceLayerBuffers::tied_dwte(int64_t offset_in_layer0) {
  if (tied_dwte_.empty()) {
    tied_dwte_ = ops_.allocate_floats(wte_numel_, MemoryCategory::kGradients);
    ops_.grow_staging(staging_, sizeof(float) * static_cast<size_t>(wte_numel_),
                      MemoryCategory::kCommunication);
  }
  host_tied_dwte_ = host_.tied_dwte(offset_in_layer0);
  ops_.fill_zero(tied_dwte_.as<float>(), wte_numel_);
  return tied_dwte_.as<float>();
}

void DeviceLayerBuffers::add_to_host(float* host, const float* device, int64_t n) {
  ops_.download(staging_.data(), device, sizeof(float) * static_cast<size_t>(n));
  tensor::cpu::add_inplace(host, staging_.as<float>(), n);
}

}  // namespace ds::model
