#include "config/model_config.h"

#include <optional>

#include "config/hf_config.h"
#include "util/files.h"
#include "util/strings.h"

namespace ds::config {
namespace {

struct Preset {
  const char* name;
  int64_t n_layer, n_head, n_embd, vocab_size, block_size;
  const char* arch = "gpt";
  int64_t n_kv_head = 0, intermediate_size = 0;
};

// GPT-2's published sizes, plus a ~1M-parameter byte-level model for CPU work.
constexpr Preset kPresets[] = {
    {"gpt-tiny", 4, 4, 128, 256, 128},
    {"gpt-small", 6, 6, 384, 256, 256},
    {"gpt2-124m", 12, 12, 768, 50257, 1024},
    {"gpt2-350m", 24, 16, 1024, 50257, 1024},
    {"gpt2-774m", 36, 20, 1280, 50257, 1024},
    {"gpt2-1558m", 48, 25, 1600, 50257, 1024},
    // A byte-level Llama for CPU work: grouped-query attention, SwiGLU, RoPE.
    {"llama-tiny", 4, 4, 128, 256, 128, "llama", 2, 352},
};

// What changes with arch: llama (Hugging Face's LlamaConfig defaults).
void apply_llama_defaults(ModelConfig& m) {
  m.arch = "llama";
  m.tie_embeddings = false;
  m.layer_norm_epsilon = 1e-6;
}

RopeScaling read_rope_scaling(MapReader& r) {
  RopeScaling s;
  const std::string type = r.get_choice("rope_type", "llama3", {"llama3"});
  (void)type;
  s.factor = r.get_double("factor", s.factor, Range::positive());
  s.low_freq_factor = r.get_double("low_freq_factor", s.low_freq_factor, Range::positive());
  s.high_freq_factor = r.get_double("high_freq_factor", s.high_freq_factor, Range::positive());
  s.original_max_position_embeddings = r.get_int(
      "original_max_position_embeddings", s.original_max_position_embeddings, Range::at_least(1));
  if (s.high_freq_factor <= s.low_freq_factor) {
    r.fail("high_freq_factor", "high_freq_factor must be larger than low_freq_factor");
  }
  r.finish();
  return s;
}

std::optional<ModelConfig> find_preset(const std::string& name) {
  for (const Preset& p : kPresets) {
    if (to_lower(name) == p.name) {
      ModelConfig m;
      m.preset = p.name;
      m.n_layer = p.n_layer;
      m.n_head = p.n_head;
      m.n_embd = p.n_embd;
      m.vocab_size = p.vocab_size;
      m.block_size = p.block_size;
      if (std::string(p.arch) == "llama") apply_llama_defaults(m);
      m.n_kv_head = p.n_kv_head;
      m.intermediate_size = p.intermediate_size;
      return m;
    }
  }
  return std::nullopt;
}

void read_fields(MapReader& m, ModelConfig& c) {
  const std::string arch = m.get_choice("arch", c.arch, {"gpt", "llama"});
  if (arch == "llama" && !c.llama()) apply_llama_defaults(c);
  c.arch = arch;
  c.n_layer = m.get_int("n_layer", c.n_layer, Range::at_least(1));
  c.n_head = m.get_int("n_head", c.n_head, Range::at_least(1));
  c.n_embd = m.get_int("n_embd", c.n_embd, Range::at_least(1));
  c.vocab_size = m.get_int("vocab_size", c.vocab_size, Range::between(2, 1 << 30));
  c.block_size = m.get_int("block_size", c.block_size, Range::at_least(1));
  c.tie_embeddings = m.get_bool("tie_embeddings", c.tie_embeddings);
  c.layer_norm_epsilon =
      m.get_double("layer_norm_epsilon", c.layer_norm_epsilon, Range::positive());
  const auto llama_only = [&](const char* key) {
    if (!c.llama() && m.has(key)) m.fail(key, fmt::format("{} needs arch: llama", key));
  };
  for (const char* key : {"n_kv_head", "intermediate_size", "rope_theta", "rope_scaling"}) {
    llama_only(key);
  }
  c.n_kv_head = m.get_int("n_kv_head", c.n_kv_head, Range::at_least(0));
  c.intermediate_size = m.get_int("intermediate_size", c.intermediate_size, Range::at_least(0));
  c.rope_theta = m.get_double("rope_theta", c.rope_theta, Range::positive());
  if (auto r = m.get_map("rope_scaling")) c.rope_scaling = read_rope_scaling(*r);
  if (c.n_head % c.kv_heads() != 0) {
    m.fail("n_kv_head",
           fmt::format("n_head {} is not a multiple of n_kv_head {}", c.n_head, c.kv_heads()),
           "each key/value head serves n_head / n_kv_head query heads");
  }
  if (c.llama() && (c.n_embd / c.n_head) % 2 != 0) {
    m.fail("n_head", fmt::format("the head size n_embd / n_head = {} is odd; rotary "
                                 "embeddings rotate pairs of channels",
                                 c.n_embd / c.n_head));
  }
  if (c.n_embd % c.n_head != 0) {
    m.fail(m.has("n_head") ? "n_head" : "n_embd",
           fmt::format("n_embd {} is not divisible by n_head {}", c.n_embd, c.n_head),
           "every attention head gets n_embd / n_head channels");
  }
  m.finish();
}

ModelConfig preset_or_fail(MapReader& parent, const std::string& key, const std::string& name) {
  if (auto preset = find_preset(name)) return *preset;
  const auto near = closest_match(name, model_preset_names());
  parent.fail(key,
              fmt::format("unknown model preset \"{}\" (and no such file); presets: {}", name,
                          join_choices(model_preset_names())),
              near ? fmt::format("did you mean \"{}\"?", *near) : "");
}

}  // namespace

int64_t ModelConfig::mlp_width() const {
  if (!llama()) return 4 * n_embd;
  if (intermediate_size > 0) return intermediate_size;
  // Llama's rule: 2/3 of 4 n_embd, rounded up to a multiple of 256.
  const int64_t width = 8 * n_embd / 3;
  return (width + 255) / 256 * 256;
}

int64_t ModelConfig::parameter_count() const {
  const int64_t c = n_embd;
  if (llama()) {
    const int64_t kv = kv_heads() * (c / n_head);
    const int64_t per_block = 2 * c + c * c + 2 * c * kv + c * c + 3 * c * mlp_width();
    return vocab_size * c + n_layer * per_block + c + (tie_embeddings ? 0 : vocab_size * c);
  }
  const int64_t per_block = 2 * 2 * c            // two layernorms
                            + c * 3 * c + 3 * c  // qkv
                            + c * c + c          // attention projection
                            + c * 4 * c + 4 * c  // MLP up
                            + 4 * c * c + c;     // MLP down
  const int64_t embeddings = vocab_size * c + block_size * c;
  const int64_t head = tie_embeddings ? 0 : vocab_size * c;
  return embeddings + n_layer * per_block + 2 * c + head;
}

const std::vector<std::string>& model_preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const Preset& p : kPresets) out.emplace_back(p.name);
    return out;
  }();
  return names;
}

ModelConfig parse_model(MapReader& parent, const std::string& key) {
  const YAML::Node node = parent.raw(key);
  if (!node.IsDefined() || node.IsNull()) {
    parent.fail(
        key, "missing: a preset name, a path to a model description, or a map",
        fmt::format("e.g. model: gpt-tiny (presets: {})", join_choices(model_preset_names())));
  }
  if (node.IsScalar()) {
    const std::string value = node.Scalar();
    const std::filesystem::path path = resolve_relative(parent.document().dir, value);
    const std::string ext = to_lower(path.extension().string());
    const bool looks_like_file = ext == ".yaml" || ext == ".yml" || ext == ".json" ||
                                 ext == ".cfg" || value.find('/') != std::string::npos;
    if (!looks_like_file) return preset_or_fail(parent, key, value);
    MapReader m = parent.load_referenced(key, path, "model description");
    return parse_model_map(m);
  }
  auto m = parent.get_map(key);
  return parse_model_map(*m);
}

ModelConfig parse_model_map(MapReader& m) {
  ModelConfig c;
  if (auto dir = m.get_optional_string("from_hf")) {
    // The shape is the folder's config.json; only the context may change.
    const std::filesystem::path path = resolve_relative(m.document().dir, *dir);
    c = read_hf_config(path);
    c.hf_dir = path.string();
    c.block_size = m.get_int("block_size", c.block_size, Range::at_least(1));
    m.finish();  // any other key is unknown here: the shape is the folder's
    return c;
  }
  if (auto preset = m.get_optional_string("preset")) c = preset_or_fail(m, "preset", *preset);
  read_fields(m, c);
  return c;
}

}  // namespace ds::config
