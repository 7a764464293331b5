// Model weights as safetensors with Hugging Face's names and layouts (GPT-2: Conv1D
// weights [in, out]; Llama: nn.Linear [out, in]), as `transformers` and PyTorch read them.
#pragma once

#include <deque>
#include <filesystem>
#include <vector>

#include "checkpoint/safetensors.h"
#include "model/model_layout.h"

namespace ds::checkpoint {

// The weights of safetensors files (a sharded Hugging Face checkpoint: together they must
// hold every parameter exactly once), read by flat range on demand: the files are mapped
// and checked against the layout up front, and a ZeRO-3 rank then reads only its own
// pieces. Names may carry the base model's prefix ("transformer.", "model.") or not;
// F32, BF16 and F16 are read; the attention-mask buffers old GPT-2 files carry are
// skipped. A missing, extra or wrongly shaped tensor is a UsageError naming it.
class WeightReader {
 public:
  WeightReader(const std::vector<std::filesystem::path>& paths, const model::ModelLayout& layout,
               bool tie_embeddings);
  // dst[0, count) = the flat parameter buffer's elements [offset, offset + count); the
  // alignment padding between parameters reads as 0.
  void read(int64_t offset, int64_t count, float* dst) const;

 private:
  const model::ModelLayout& layout_;
  std::deque<SafetensorsFile> files_;     // stable addresses for sources_
  std::vector<const StTensor*> sources_;  // by layout.params index
};

// Fills `flat` (layout.total floats) from a safetensors file, or several: every element
// through a WeightReader.
void load_weights(const std::filesystem::path& path, const model::ModelLayout& layout,
                  bool tie_embeddings, float* flat);
void load_weights(const std::vector<std::filesystem::path>& paths, const model::ModelLayout& layout,
                  bool tie_embeddings, float* flat);

// Writes every parameter (or the layout.params indexes in `only`) as F32, or BF16 when `bf16`
// (lm_head.weight omitted when tied, as Hugging Face does), atomically.
void save_weights(const std::filesystem::path& path, const model::ModelLayout& layout,
                  const float* flat, bool bf16 = false, const std::vector<int>& only = {});

}  // namespace ds::checkpoint
