#include "checkpoint/weights_file.h"

#include <cstring>
#include <map>

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
  load_weights(std::vector<std::filesystem::path>{path}, layout, tie_embeddings, flat);
}

void load_weights(const std::vector<std::filesystem::path>& paths, const model::ModelLayout& layout,
                  bool tie_embeddings, float* flat) {
  std::map<std::string, std::string> loaded;  // parameter -> the file it came from
  std::memset(flat, 0, sizeof(float) * layout.total);
  const std::string prefix = base_prefix(layout);
  std::vector<float> tied_head;  // a tied model's lm_head.weight, when a file has one
  std::string head_where;
  for (const std::filesystem::path& path : paths) {
    const SafetensorsFile file = SafetensorsFile::load(path);
    const std::string where = path.string();
    for (const StTensor& t : file.tensors()) {
      const std::string name = canonical_name(t.name, prefix);
      if (is_mask_buffer(name)) continue;
      if (t.dtype != StDType::kF32 && t.dtype != StDType::kBF16 && t.dtype != StDType::kF16) {
        throw UsageError(fmt::format("{}: tensor '{}' is {}; expected F32, BF16 or F16", where,
                                     t.name, st_dtype_name(t.dtype)));
      }
      if (name == "lm_head.weight" && tie_embeddings) {
        // Must equal the token embedding; checked below.
        const auto& wte = layout.params[layout.layers[0].first_param];
        if (t.shape != wte.shape) {
          throw UsageError(fmt::format("{}: lm_head.weight has shape {}, expected {}", where,
                                       shape_text(t.shape), shape_text(wte.shape)));
        }
        tied_head.resize(static_cast<size_t>(t.numel()));
        convert_to_f32(t, tied_head.data());
        head_where = where;
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
      if (const auto [it, fresh] = loaded.emplace(name, where); !fresh) {
        throw UsageError(
            fmt::format("{}: '{}' appears twice (also in {}, with or without the "
                        "'{}' prefix)",
                        where, t.name, it->second, prefix));
      }
      if (t.shape != spec->shape) {
        throw UsageError(fmt::format("{}: tensor '{}' has shape {}, the model expects {}", where,
                                     t.name, shape_text(t.shape), shape_text(spec->shape)));
      }
      convert_to_f32(t, flat + spec->offset);
    }
  }
  const std::string files = paths.size() == 1 ? paths[0].string() : "the weight files";
  for (const auto& p : layout.params) {
    if (!loaded.count(p.name)) {
      throw UsageError(
          fmt::format("{}: parameter '{}' {} is missing", files, p.name, shape_text(p.shape)),
          "the weights must hold every parameter of the model in the train.cfg");
    }
  }
  if (!tied_head.empty()) {
    const auto& wte = layout.params[layout.layers[0].first_param];
    if (std::memcmp(tied_head.data(), flat + wte.offset, sizeof(float) * wte.numel) != 0) {
      throw UsageError(fmt::format("{}: lm_head.weight differs from {}, but the model ties them",
                                   head_where, wte.name),
                       "set model.tie_embeddings: false to train an untied head");
    }
  }
}

void save_weights(const std::filesystem::path& path, const model::ModelLayout& layout,
                  const float* flat, bool bf16, const std::vector<int>& only) {
  std::vector<StTensorRef> refs;
  refs.reserve(layout.params.size());
  std::vector<uint16_t> halves(bf16 ? static_cast<size_t>(layout.total) : 0);
  std::vector<int> which = only;
  if (which.empty()) {
    for (size_t i = 0; i < layout.params.size(); ++i) which.push_back(static_cast<int>(i));
  }
  for (int index : which) {
    const model::ParamSpec& p = layout.params[index];
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
