#include "model/model_layout.h"

#include "util/error.h"

namespace ds::model {
namespace {

int64_t round_up(int64_t v, int64_t multiple) { return (v + multiple - 1) / multiple * multiple; }

class LayoutBuilder {
 public:
  void begin_layer(LayerKind kind, std::string name, int block_index = -1) {
    LayerSpec layer;
    layer.kind = kind;
    layer.name = std::move(name);
    layer.offset = cursor_;
    layer.first_param = static_cast<int>(layout_.params.size());
    layer.block_index = block_index;
    layout_.layers.push_back(std::move(layer));
  }

  void add(std::string name, std::vector<int64_t> shape, Init init) {
    ParamSpec p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.numel = 1;
    for (int64_t d : p.shape) p.numel *= d;
    p.offset = cursor_;
    p.init = init;
    p.layer = static_cast<int>(layout_.layers.size()) - 1;
    cursor_ = round_up(cursor_ + p.numel, kParamAlignment);
    layout_.params.push_back(std::move(p));
    LayerSpec& layer = layout_.layers.back();
    layer.num_params += 1;
    layer.numel = cursor_ - layer.offset;
  }

  ModelLayout finish() {
    layout_.total = cursor_;
    return std::move(layout_);
  }

 private:
  ModelLayout layout_;
  int64_t cursor_ = 0;
};

}  // namespace

const ParamSpec& ModelLayout::param(const std::string& name) const {
  for (const ParamSpec& p : params) {
    if (p.name == name) return p;
  }
  throw Error(fmt::format("the model has no parameter named {}", name));
}

int64_t ModelLayout::parameter_count() const {
  int64_t n = 0;
  for (const ParamSpec& p : params) n += p.numel;
  return n;
}

namespace {

// Hugging Face's LlamaForCausalLM: nn.Linear weights are [out, in], no biases.
ModelLayout build_llama_layout(const config::ModelConfig& m) {
  const int64_t C = m.n_embd, V = m.vocab_size, I = m.mlp_width();
  const int64_t KV = m.kv_heads() * (C / m.n_head);
  LayoutBuilder b;
  b.begin_layer(LayerKind::kEmbedding, "embedding");
  b.add("model.embed_tokens.weight", {V, C}, Init::kNormal);
  for (int64_t i = 0; i < m.n_layer; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    b.begin_layer(LayerKind::kBlock, fmt::format("layers.{}", i), static_cast<int>(i));
    b.add(p + "input_layernorm.weight", {C}, Init::kOnes);
    b.add(p + "self_attn.q_proj.weight", {C, C}, Init::kNormal);
    b.add(p + "self_attn.k_proj.weight", {KV, C}, Init::kNormal);
    b.add(p + "self_attn.v_proj.weight", {KV, C}, Init::kNormal);
    b.add(p + "self_attn.o_proj.weight", {C, C}, Init::kNormal);
    b.add(p + "post_attention_layernorm.weight", {C}, Init::kOnes);
    b.add(p + "mlp.gate_proj.weight", {I, C}, Init::kNormal);
    b.add(p + "mlp.up_proj.weight", {I, C}, Init::kNormal);
    b.add(p + "mlp.down_proj.weight", {C, I}, Init::kNormal);
  }
  b.begin_layer(LayerKind::kHead, "head");
  b.add("model.norm.weight", {C}, Init::kOnes);
  if (!m.tie_embeddings) b.add("lm_head.weight", {V, C}, Init::kNormal);
  return b.finish();
}

}  // namespace

ModelLayout build_layout(const config::ModelConfig& m) {
  if (m.llama()) return build_llama_layout(m);
  const int64_t C = m.n_embd, V = m.vocab_size;
  LayoutBuilder b;
  b.begin_layer(LayerKind::kEmbedding, "embedding");
  b.add("transformer.wte.weight", {V, C}, Init::kNormal);
  b.add("transformer.wpe.weight", {m.block_size, C}, Init::kNormal);
  for (int64_t i = 0; i < m.n_layer; ++i) {
    const std::string p = fmt::format("transformer.h.{}.", i);
    b.begin_layer(LayerKind::kBlock, fmt::format("h.{}", i), static_cast<int>(i));
    b.add(p + "ln_1.weight", {C}, Init::kOnes);
    b.add(p + "ln_1.bias", {C}, Init::kZeros);
    b.add(p + "attn.c_attn.weight", {C, 3 * C}, Init::kNormal);
    b.add(p + "attn.c_attn.bias", {3 * C}, Init::kZeros);
    b.add(p + "attn.c_proj.weight", {C, C}, Init::kResidualNormal);
    b.add(p + "attn.c_proj.bias", {C}, Init::kZeros);
    b.add(p + "ln_2.weight", {C}, Init::kOnes);
    b.add(p + "ln_2.bias", {C}, Init::kZeros);
    b.add(p + "mlp.c_fc.weight", {C, 4 * C}, Init::kNormal);
    b.add(p + "mlp.c_fc.bias", {4 * C}, Init::kZeros);
    b.add(p + "mlp.c_proj.weight", {4 * C, C}, Init::kResidualNormal);
    b.add(p + "mlp.c_proj.bias", {C}, Init::kZeros);
  }
  b.begin_layer(LayerKind::kHead, "head");
  b.add("transformer.ln_f.weight", {C}, Init::kOnes);
  b.add("transformer.ln_f.bias", {C}, Init::kZeros);
  if (!m.tie_embeddings) b.add("lm_head.weight", {V, C}, Init::kNormal);
  return b.finish();
}

}  // namespace ds::model
