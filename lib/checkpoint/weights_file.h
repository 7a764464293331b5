// Model weights as safetensors with Hugging Face's names and layouts (GPT-2: Conv1D
// weights [in, out]; Llama: nn.Linear [out, in]), as `transformers` and PyTorch read them.
#pragma once

#include <filesystem>
#include <vector>

#include "model/model_layout.h"

namespace ds::checkpoint {

// Fills `flat` (layout.total floats) from a safetensors file. Names may carry the
// "transformer." prefix (GPT2LMHeadModel) or not (GPT2Model); F32, BF16 and F16 are
// read; the attention-mask buffers old GPT-2 files carry (attn.bias, attn.masked_bias)
// are skipped. A missing, extra or wrongly shaped tensor is a UsageError naming it.
void load_weights(const std::filesystem::path& path, const model::ModelLayout& layout,
                  bool tie_embeddings, float* flat);
// The same over several files (a sharded Hugging Face checkpoint): together they must hold
// every parameter exactly once.
void load_weights(const std::vector<std::filesystem::path>& paths, const model::ModelLayout& layout,
                  bool tie_embeddings, float* flat);

// Writes every parameter (or the layout.params indexes in `only`) as F32, or BF16 when `bf16`
// (lm_head.weight omitted when tied, as Hugging Face does), atomically.
void save_weights(const std::filesystem::path& path, const model::ModelLayout& layout,
                  const float* flat, bool bf16 = false, const std::vector<int>& only = {});

}  // namespace ds::checkpoint
