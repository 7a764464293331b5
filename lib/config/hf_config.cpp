#include "config/hf_config.h"

#include "util/error.h"
#include "util/files.h"

namespace ds::config {
namespace {

using Json = nlohmann::json;

// Typed access to one config.json, every error naming the file and the key.
class HfKeys {
 public:
  HfKeys(const Json& j, std::string file) : j_(j), file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what,
                         const std::string& hint = "") const {
    throw UsageError(fmt::format("{}: {}: {}", file_, key, what), hint);
  }
  int64_t integer(const std::string& key, std::optional<int64_t> fallback = std::nullopt) const {
    if (!j_.contains(key) || j_[key].is_null()) {
      if (fallback) return *fallback;
      fail(key, "missing");
    }
    if (!j_[key].is_number_integer() || j_[key].get<int64_t>() < 1) {
      fail(key, fmt::format("expected a positive integer, got {}", j_[key].dump()));
    }
    return j_[key].get<int64_t>();
  }
  double number(const std::string& key, double fallback) const {
    if (!j_.contains(key) || j_[key].is_null()) return fallback;
    if (!j_[key].is_number()) fail(key, fmt::format("expected a number, got {}", j_[key].dump()));
    return j_[key].get<double>();
  }
  bool flag(const std::string& key, bool fallback) const {
    if (!j_.contains(key) || j_[key].is_null()) return fallback;
    if (!j_[key].is_boolean())
      fail(key, fmt::format("expected true or false, got {}", j_[key].dump()));
    return j_[key].get<bool>();
  }
  std::string text(const std::string& key, const std::string& fallback) const {
    if (!j_.contains(key) || j_[key].is_null()) return fallback;
    if (!j_[key].is_string()) fail(key, fmt::format("expected a string, got {}", j_[key].dump()));
    return j_[key].get<std::string>();
  }
  const Json& raw(const std::string& key) const { return j_[key]; }
  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }

 private:
  const Json& j_;
  std::string file_;
};

std::optional<RopeScaling> read_rope_scaling(const HfKeys& k) {
  if (!k.has("rope_scaling")) return std::nullopt;
  const Json& r = k.raw("rope_scaling");
  if (!r.is_object()) k.fail("rope_scaling", "expected an object or null");
  const std::string type = r.value("rope_type", r.value("type", std::string("default")));
  if (type == "default") return std::nullopt;
  if (type != "llama3") {
    k.fail("rope_scaling.rope_type", fmt::format("\"{}\" is not supported", type),
           "dstrain implements Llama 3's \"llama3\" scaling");
  }
  RopeScaling s;
  s.factor = r.value("factor", s.factor);
  s.low_freq_factor = r.value("low_freq_factor", s.low_freq_factor);
  s.high_freq_factor = r.value("high_freq_factor", s.high_freq_factor);
  s.original_max_position_embeddings =
      r.value("original_max_position_embeddings", s.original_max_position_embeddings);
  return s;
}

ModelConfig read_llama(const HfKeys& k) {
  ModelConfig m;
  m.arch = "llama";
  m.n_embd = k.integer("hidden_size");
  m.n_layer = k.integer("num_hidden_layers");
  m.n_head = k.integer("num_attention_heads");
  m.n_kv_head = k.integer("num_key_value_heads", m.n_head);
  m.intermediate_size = k.integer("intermediate_size", 11008);
  m.vocab_size = k.integer("vocab_size", 32000);
  m.block_size = k.integer("max_position_embeddings", 2048);
  m.layer_norm_epsilon = k.number("rms_norm_eps", 1e-6);
  m.rope_theta = k.number("rope_theta", 10000.0);
  m.rope_scaling = read_rope_scaling(k);
  m.tie_embeddings = k.flag("tie_word_embeddings", false);
  if (k.integer("head_dim", m.n_embd / m.n_head) * m.n_head != m.n_embd) {
    k.fail("head_dim", "dstrain needs head_dim == hidden_size / num_attention_heads");
  }
  if (k.text("hidden_act", "silu") != "silu") {
    k.fail("hidden_act", fmt::format("\"{}\" is not supported; Llama's MLP uses \"silu\"",
                                     k.text("hidden_act", "")));
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (k.flag(key, false)) k.fail(key, "biases in Llama's projections are not supported");
  }
  if (m.n_head % m.n_kv_head != 0) {
    k.fail("num_key_value_heads", "must divide num_attention_heads");
  }
  return m;
}

ModelConfig read_gpt2(const HfKeys& k) {
  ModelConfig m;
  m.arch = "gpt";
  m.n_embd = k.integer("n_embd", 768);
  m.n_layer = k.integer("n_layer", 12);
  m.n_head = k.integer("n_head", 12);
  m.vocab_size = k.integer("vocab_size", 50257);
  m.block_size = k.integer("n_positions", 1024);
  m.layer_norm_epsilon = k.number("layer_norm_epsilon", 1e-5);
  m.tie_embeddings = k.flag("tie_word_embeddings", true);
  const std::string act = k.text("activation_function", "gelu_new");
  if (act != "gelu_new" && act != "gelu_pytorch_tanh") {
    k.fail("activation_function",
           fmt::format("\"{}\" is not supported; GPT-2 uses \"gelu_new\" (tanh GELU)", act));
  }
  if (k.has("n_inner") && k.integer("n_inner") != 4 * m.n_embd) {
    k.fail("n_inner", "dstrain's GPT-2 MLP is 4 * n_embd wide");
  }
  // Variants of GPT-2's attention that change its numbers.
  if (!k.flag("scale_attn_weights", true)) {
    k.fail("scale_attn_weights", "unscaled attention scores are not supported");
  }
  if (k.flag("scale_attn_by_inverse_layer_idx", false)) {
    k.fail("scale_attn_by_inverse_layer_idx", "per-layer attention scaling is not supported");
  }
  return m;
}

}  // namespace

ModelConfig read_hf_config(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "config.json";
  if (!std::filesystem::exists(path)) {
    throw UsageError(
        fmt::format("{}: no such file", path.string()),
        "model.from_hf names a Hugging Face model folder (config.json, *.safetensors)");
  }
  Json j;
  try {
    j = Json::parse(read_text_file(path));
  } catch (const Json::exception& e) {
    throw UsageError(fmt::format("{}: not JSON: {}", path.string(), e.what()));
  }
  if (!j.is_object()) throw UsageError(fmt::format("{}: not a JSON object", path.string()));
  const HfKeys k(j, path.string());
  std::string type = k.text("model_type", "");
  if (type.empty() && k.has("architectures") && k.raw("architectures").is_array() &&
      !k.raw("architectures").empty()) {
    const std::string arch = k.raw("architectures")[0].get<std::string>();
    type = arch == "LlamaForCausalLM" ? "llama" : arch == "GPT2LMHeadModel" ? "gpt2" : arch;
  }
  ModelConfig m;
  if (type == "llama") {
    m = read_llama(k);
  } else if (type == "gpt2") {
    m = read_gpt2(k);
  } else {
    k.fail("model_type", fmt::format("\"{}\" is not supported", type),
           "dstrain trains LlamaForCausalLM (llama) and GPT2LMHeadModel (gpt2) models");
  }
  if (m.n_embd % m.n_head != 0) k.fail("num_attention_heads", "must divide the hidden size");
  return m;
}

nlohmann::ordered_json hf_config_json(const ModelConfig& m, const std::string& dtype) {
  nlohmann::ordered_json j;
  if (m.llama()) {
    j["architectures"] = {"LlamaForCausalLM"};
    j["model_type"] = "llama";
    j["hidden_size"] = m.n_embd;
    j["intermediate_size"] = m.mlp_width();
    j["num_hidden_layers"] = m.n_layer;
    j["num_attention_heads"] = m.n_head;
    j["num_key_value_heads"] = m.kv_heads();
    j["head_dim"] = m.n_embd / m.n_head;
    j["vocab_size"] = m.vocab_size;
    j["max_position_embeddings"] = m.block_size;
    j["rms_norm_eps"] = m.layer_norm_epsilon;
    j["rope_theta"] = m.rope_theta;
    if (m.rope_scaling) {
      const RopeScaling& s = *m.rope_scaling;
      j["rope_scaling"] = {
          {"rope_type", "llama3"},
          {"factor", s.factor},
          {"low_freq_factor", s.low_freq_factor},
          {"high_freq_factor", s.high_freq_factor},
          {"original_max_position_embeddings", s.original_max_position_embeddings}};
    } else {
      j["rope_scaling"] = nullptr;
    }
    j["hidden_act"] = "silu";
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["initializer_range"] = 0.02;
  } else {
    j["architectures"] = {"GPT2LMHeadModel"};
    j["model_type"] = "gpt2";
    j["n_embd"] = m.n_embd;
    j["n_layer"] = m.n_layer;
    j["n_head"] = m.n_head;
    j["n_positions"] = m.block_size;
    j["n_ctx"] = m.block_size;
    j["vocab_size"] = m.vocab_size;
    j["layer_norm_epsilon"] = m.layer_norm_epsilon;
    j["activation_function"] = "gelu_new";
    // dstrain trains without dropout.
    j["resid_pdrop"] = 0.0;
    j["embd_pdrop"] = 0.0;
    j["attn_pdrop"] = 0.0;
  }
  j["tie_word_embeddings"] = m.tie_embeddings;
  j["torch_dtype"] = dtype;
  return j;
}

}  // namespace ds::config
