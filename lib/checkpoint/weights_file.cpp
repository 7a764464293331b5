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

// Elements [begin, begin + n) of a tensor as floats (F32, BF16 or F16 in the file).
void convert_to_f32(const StTensor& t, float* out, int64_t begin, int64_t n) {
  if (t.dtype == StDType::kF32) {
    std::memcpy(out, t.data.data() + sizeof(float) * begin, sizeof(float) * n);
    return;
  }
  std::vector<uint16_t> halves(n);
  std::memcpy(halves.data(), t.data.data() + sizeof(uint16_t) * begin, sizeof(uint16_t) * n);
  for (int64_t i = 0; i < n; ++i) {
    out[i] =
        t.dtype == StDType::kBF16 ? tensor::bf16_to_f32(halves[i]) : tensor::f16_to_f32(halves[i]);
  }
}

}  // namespace

WeightReader::WeightReader(const std::vector<std::filesystem::path>& paths,
                           const model::ModelLayout& layout, bool tie_embeddings)
    : layout_(layout), sources_(layout.params.size()) {
  std::map<std::string, std::string> loaded;  // parameter -> the file it came from
  const std::string prefix = base_prefix(layout);
  const StTensor* tied_head = nullptr;
  std::string head_where;
  for (const std::filesystem::path& path : paths) {
    files_.push_back(SafetensorsFile::load(path));  // mapped: values are read on demand
    const SafetensorsFile& file = files_.back();
    const std::string where = path.string();
    for (const StTensor& t : file.tensors()) {
      const std::string name = canonical_name(t.name, prefix);
      if (is_mask_buffer(name)) continue;
      if (t.dtype != StDType::kF32 && t.dtype != StDType::kBF16 && t.dtype != StDType::kF16) {
        throw UsageError(fmt::format("{}: tensor '{}' is {}; expected F32, BF16 or F16", where,
                                     t.name, st_dtype_name(t.dtype)));
      }
      if (name == "lm_head.weight" && tie_embeddings) {
        tied_head = &t;  // must equal the token embedding; checked below
        head_where = where;
        continue;
      }
      int index = -1;
      for (size_t i = 0; i < layout.params.size(); ++i) {
        if (layout.params[i].name == name) index = static_cast<int>(i);
      }
      if (index < 0) {
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
      const model::ParamSpec& spec = layout.params[index];
      if (t.shape != spec.shape) {
        throw UsageError(fmt::format("{}: tensor '{}' has shape {}, the model expects {}", where,
                                     t.name, shape_text(t.shape), shape_text(spec.shape)));
      }
      sources_[index] = &t;
    }
  }
  const std::string files = paths.size() == 1 ? paths[0].string() : "the weight files";
  for (size_t i = 0; i < layout.params.size(); ++i) {
    const model::ParamSpec& p = layout.params[i];
    if (sources_[i] == nullptr) {
      throw UsageError(
          fmt::format("{}: parameter '{}' {} is missing", files, p.name, shape_text(p.shape)),
          "the weights must hold every parameter of the model in the train.cfg");
    }
  }
  if (tied_head != nullptr) {
    const int wte = layout.layers[0].first_param;
    const model::ParamSpec& spec = layout.params[wte];
    if (tied_head->shape != spec.shape) {
      throw UsageError(fmt::format("{}: lm_head.weight has shape {}, expected {}", head_where,
                                   shape_text(tied_head->shape), shape_text(spec.shape)));
    }
    std::vector<float> head(spec.numel), embedding(spec.numel);
    convert_to_f32(*tied_head, head.data(), 0, spec.numel);
    convert_to_f32(*sources_[wte], embedding.data(), 0, spec.numel);
    if (head != embedding) {
      throw UsageError(fmt::format("{}: lm_head.weight differs from {}, but the model ties them",
                                   head_where, spec.name),
                       "set model.tie_embeddings: false to train an untied head");
    }
  }
}

void WeightReader::read(int64_t offset, int64_t count, float* dst) const {
  std::memset(dst, 0, sizeof(float) * count);  // alignment padding between parameters
  const int64_t end = offset + count;
  for (size_t i = 0; i < layout_.params.size(); ++i) {
    const model::ParamSpec& p = layout_.params[i];
    const int64_t begin = std::max(offset, p.offset);
    const int64_t stop = std::min(end, p.offset + p.numel);
    if (begin < stop)
      convert_to_f32(*sources_[i], dst + (begin - offset), begin - p.offset, stop - begin);
  }
}

void load_weights(const std::filesystem::path& path, const model::ModelLayout& layout,
                  bool tie_embeddings, float* flat) {
  load_weights(std::vector<std::filesystem::path>{path}, layout, tie_embeddings, flat);
}

void load_weights(const std::vector<std::filesystem::path>& paths, const model::ModelLayout& layout,
                  bool tie_embeddings, float* flat) {
  WeightReader(paths, layout, tie_embeddings).read(0, layout.total, flat);
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
