#include "checkpoint/weights_file.h"

#include <cstring>
#include <set>

#include "checkpoint/safetensors.h"
#include "tensor/dtype.h"
#include "util/error.h"

namespace ds::checkpoint {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The causal-mask buffers that GPT-2 files written by older transformers carry.
bool is_mask_buffer(const std::string& name) {
  return name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias");
}

// The base model's prefix: "transformer." (GPT2LMHeadModel) or "model." (LlamaForCausalLM).
// Files of the base model alone (GPT2Model, LlamaModel) name their tensors without it.
std::string base_prefix(const model::ModelLayout& layout) {
  const std::string& first = layout.params.front().name;
  return first.substr(0, first.find('.') + 1);
}

std::string canonical_name(const std::string& name, const std::string& prefix) {
  if (name.starts_with(prefix) || name.starts_with("lm_head.")) return name;
  return prefix + name;
}

void convert_to_f32(const StTensor& t, float* out) {
  const int64_t n = t.numel();
  if (t.dtype == StDType::kF32) {
    std::memcpy(out, t.data.data(), sizeof(float) * n);
    return;
  }
  std::vector<uint16_t> halves(n);
  std::memcpy(halves.data(), t.data.data(), sizeof(uint16_t) * n);
  for (int64_t i = 0; i < n; ++i) {
    out[i] =
        t.dtype == StDType::kBF16 ? tensor::bf16_to_f32(halves[i]) : tensor::f16_to_f32(halves[i]);
  }
}

}  // namespace

void load_weights(const std::filesystem::path& path, const model::ModelLayout& layout,
                  bool tie_embeddings, float* flat) {
  const SafetensorsFile file = SafetensorsFile::load(path);
  const std::string where = path.string();
  std::set<std::string> loaded;
  std::memset(flat, 0, sizeof(float) * layout.total);
  const StTensor* lm_head = nullptr;
  const std::string prefix = base_prefix(layout);
  for (const StTensor& t : file.tensors()) {
    const std::string name = canonical_name(t.name, prefix);
    if (is_mask_buffer(name)) continue;
    if (name == "lm_head.weight" && tie_embeddings) {
      lm_head = &t;  // must equal wte; checked below
      continue;
    }
    const model::ParamSpec* spec = nullptr;
    for (const auto& p : layout.params) {
      if (p.name == name) spec = &p;
    }
    if (spec == nullptr) {
      throw UsageError(
          fmt::format("{}: tensor '{}' is not a parameter of this model", where, t.name),
          "check model: in the train.cfg (n_layer, tie_embeddings) against the file");
    }
    if (!loaded.insert(name).second) {
      throw UsageError(fmt::format("{}: '{}' appears twice (with and without the '{}' prefix)",
                                   where, t.name, prefix));
    }
    if (t.shape != spec->shape) {
      throw UsageError(fmt::format("{}: tensor '{}' has shape {}, the model expects {}", where,
                                   t.name, shape_text(t.shape), shape_text(spec->shape)));
    }
    if (t.dtype != StDType::kF32 && t.dtype != StDType::kBF16 && t.dtype != StDType::kF16) {
      throw UsageError(fmt::format("{}: tensor '{}' is {}; expected F32, BF16 or F16", where,
                                   t.name, st_dtype_name(t.dtype)));
    }
    convert_to_f32(t, flat + spec->offset);
  }
  for (const auto& p : layout.params) {
    if (!loaded.count(p.name)) {
      throw UsageError(
          fmt::format("{}: parameter '{}' {} is missing", where, p.name, shape_text(p.shape)),
          "the file must hold every parameter of the model in the train.cfg");
    }
  }
  if (lm_head != nullptr) {
    const auto& wte = layout.params[layout.layers[0].first_param];  // the token embedding
    std::vector<float> head(wte.numel);
    if (lm_head->shape != wte.shape) {
      throw UsageError(fmt::format("{}: lm_head.weight has shape {}, expected {}", where,
                                   shape_text(lm_head->shape), shape_text(wte.shape)));
    }
    convert_to_f32(*lm_head, head.data());
    if (std::memcmp(head.data(), flat + wte.offset, sizeof(float) * wte.numel) != 0) {
      throw UsageError(fmt::format("{}: lm_head.weight differs from {}, but the model ties them",
                                   where, wte.name),
                       "set model.tie_embeddings: false to train an untied head");
    }
  }
}

void save_weights(const std::filesystem::path& path, const model::ModelLayout& layout,
                  const float* flat, bool bf16) {
  std::vector<StTensorRef> refs;
  refs.reserve(layout.params.size());
  std::vector<uint16_t> halves(bf16 ? static_cast<size_t>(layout.total) : 0);
  for (const auto& p : layout.params) {
    if (!bf16) {
      refs.push_back({p.name, StDType::kF32, p.shape, flat + p.offset});
      continue;
    }
    for (int64_t i = 0; i < p.numel; ++i)
      halves[p.offset + i] = tensor::f32_to_bf16(flat[p.offset + i]);
    refs.push_back({p.name, StDType::kBF16, p.shape, halves.data() + p.offset});
  }
  if (!path.parent_path().empty()) std::filesystem::create_directories(path.parent_path());
  write_safetensors(path, refs, {{"format", "pt"}, {"producer", "dstrain"}});
}

}  // namespace ds::checkpoint
