// Where every parameter of a model lives in the flat parameter buffer.
//
// The model description expands into an ordered list of layers (embedding, the
// transformer blocks, the head), each owning a contiguous range of the flat buffer
// with its parameters in Hugging Face GPT-2's names and shapes. The layer is the
// unit the engine shards (ZeRO), gathers (stage 3) and partitions (pipeline).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.h"

namespace ds::model {

enum class Init {
  kNormal,          // normal(0, 0.02)
  kResidualNormal,  // normal(0, 0.02 / sqrt(2 n_layer)): projections into the residual stream
  kZeros,
  kOnes,
};

struct ParamSpec {
  std::string name;            // "transformer.h.0.attn.c_attn.weight"
  std::vector<int64_t> shape;  // Hugging Face's shape (Conv1D weights are [in, out])
  int64_t offset = 0;          // elements from the start of the flat buffer
  int64_t numel = 0;
  Init init = Init::kNormal;
  int layer = 0;  // index into ModelLayout::layers
};

enum class LayerKind { kEmbedding, kBlock, kHead };

struct LayerSpec {
  LayerKind kind = LayerKind::kBlock;
  std::string name;    // "embedding", "h.3", "head"
  int64_t offset = 0;  // the layer's range in the flat buffer
  int64_t numel = 0;
  int first_param = 0;  // its parameters are params[first_param, first_param + num_params)
  int num_params = 0;
  int block_index = -1;  // for blocks
};

struct ModelLayout {
  std::vector<ParamSpec> params;
  std::vector<LayerSpec> layers;
  int64_t total = 0;  // elements in the flat buffer, including alignment padding

  const ParamSpec& param(const std::string& name) const;  // throws ds::Error if absent
  int64_t parameter_count() const;                        // without padding
};

// Each parameter starts at a multiple of this many floats (64 bytes), so that
// every parameter view is aligned for vector loads.
inline constexpr int64_t kParamAlignment = 16;

ModelLayout build_layout(const config::ModelConfig& model);

}  // namespace ds::model
