// The Llama layout: Hugging Face's LlamaForCausalLM names and shapes, and the parameter
// count the config predicts. (Its numbers against PyTorch are golden_test's.)
#include <catch2/catch.hpp>

#include "config/model_config.h"
#include "model/model_layout.h"
#include "model/rope.h"

using namespace ds;

namespace {

config::ModelConfig llama(bool tied) {
  config::ModelConfig m;
  m.arch = "llama";
  m.n_layer = 2;
  m.n_head = 4;
  m.n_kv_head = 2;
  m.n_embd = 64;
  m.intermediate_size = 160;
  m.vocab_size = 96;
  m.tie_embeddings = tied;
  return m;
}

}  // namespace

TEST_CASE("a Llama layout has LlamaForCausalLM's names and shapes", "[model][llama]") {
  const auto layout = model::build_layout(llama(false));
  CHECK(layout.param("model.embed_tokens.weight").shape == std::vector<int64_t>{96, 64});
  CHECK(layout.param("model.layers.1.self_attn.q_proj.weight").shape ==
        std::vector<int64_t>{64, 64});
  // Grouped-query attention: 2 key/value heads of 16 channels.
  CHECK(layout.param("model.layers.1.self_attn.k_proj.weight").shape ==
        std::vector<int64_t>{32, 64});
  CHECK(layout.param("model.layers.0.mlp.down_proj.weight").shape == std::vector<int64_t>{64, 160});
  CHECK(layout.param("model.norm.weight").shape == std::vector<int64_t>{64});
  CHECK(layout.param("lm_head.weight").shape == std::vector<int64_t>{96, 64});
  CHECK(layout.layers.size() == 4);  // embedding, 2 blocks, head: what a pipeline splits
  for (bool tied : {false, true}) {
    const auto m = llama(tied);
    CHECK(model::build_layout(m).parameter_count() == m.parameter_count());
  }
  CHECK_THROWS(model::build_layout(llama(true)).param("lm_head.weight"));
}

TEST_CASE("Llama 3's rope_scaling keeps, blends and stretches frequencies", "[model][llama]") {
  const auto plain = model::rope_inverse_frequencies(16, 500000.0, std::nullopt);
  REQUIRE(plain.size() == 8);
  CHECK(plain[0] == 1.0);
  config::RopeScaling s;
  s.factor = 8;
  s.original_max_position_embeddings = 64;  // wavelengths: keep < 16 <= blend <= 64 < stretch
  const auto scaled = model::rope_inverse_frequencies(16, 500000.0, s);
  CHECK(scaled[0] == plain[0]);  // wavelength 6.3: kept
  CHECK(scaled[1] < plain[1]);   // wavelength 32: blended
  CHECK(scaled[1] > plain[1] / 8);
  CHECK(scaled[2] == Approx(plain[2] / 8).epsilon(1e-12));  // wavelength 167: stretched
}
