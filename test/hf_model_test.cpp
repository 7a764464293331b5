// Hugging Face folders: config.json read and written, weights found through the shard
// index, and every bad folder named with its file and key (exit code 2).
#include "checkpoint/hf_model.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "checkpoint/weights_file.h"
#include "config/hf_config.h"
#include "model/init.h"
#include "model/model_layout.h"
#include "process_helpers.h"
#include "util/error.h"

using namespace ds;
using Catch::Matchers::Contains;
using ds::testing::TempDir;

namespace {

std::string failure(const std::function<void()>& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("a model folder's config.json becomes the model and back", "[hf]") {
  TempDir dir("dstrain_hf_config");
  dir.write("config.json",
            R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
                "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 256,
                "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": true,
                "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 8192}})");
  const config::ModelConfig m = config::read_hf_config(dir.file(""));
  CHECK(m.llama());
  CHECK(m.kv_heads() == 2);
  CHECK(m.mlp_width() == 176);
  CHECK(m.block_size == 256);
  CHECK(m.tie_embeddings);
  REQUIRE(m.rope_scaling.has_value());
  CHECK(m.rope_scaling->factor == 32.0);
  // Written back, it reads as the same model.
  TempDir out("dstrain_hf_config_out");
  out.write("config.json", config::hf_config_json(m, "float32").dump());
  const config::ModelConfig again = config::read_hf_config(out.file(""));
  CHECK(again.n_embd == m.n_embd);
  CHECK(again.kv_heads() == m.kv_heads());
  CHECK(again.rope_scaling->original_max_position_embeddings == 8192);
}

TEST_CASE("bad model folders are named with the file and the key", "[hf]") {
  TempDir dir("dstrain_hf_bad");
  const auto with = [&](const std::string& json) {
    dir.write("config.json", json);
    return failure([&] { config::read_hf_config(dir.file("")); });
  };
  CHECK_THAT(with(R"({"model_type": "mistral"})"),
             Contains("config.json: model_type: \"mistral\" is not supported"));
  CHECK_THAT(with(R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "attention_bias": true})"),
             Contains("attention_bias"));
  CHECK_THAT(with(R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "rope_scaling": {"rope_type": "yarn"}})"),
             Contains("rope_scaling.rope_type: \"yarn\" is not supported"));
  CHECK_THAT(with(R"({"model_type": "gpt2", "activation_function": "relu"})"),
             Contains("activation_function"));
  CHECK_THAT(with(R"({"model_type": "gpt2", "scale_attn_by_inverse_layer_idx": true})"),
             Contains("scale_attn_by_inverse_layer_idx"));
  CHECK_THAT(with("{not json"), Contains("not JSON"));
  std::filesystem::remove(dir.file("config.json"));
  CHECK_THAT(failure([&] { config::read_hf_config(dir.file("")); }), Contains("no such file"));

  // An index that names a shard the folder lacks.
  dir.write("model.safetensors.index.json",
            R"({"weight_map": {"a": "model-00001-of-00002.safetensors"}})");
  CHECK_THAT(failure([&] { checkpoint::hf_weight_files(dir.file("")); }),
             Contains("the shard model-00001-of-00002.safetensors is missing"));
  std::filesystem::remove(dir.file("model.safetensors.index.json"));
  CHECK_THAT(failure([&] { checkpoint::hf_weight_files(dir.file("")); }),
             Contains("no *.safetensors weights"));
}

TEST_CASE("an exported folder is sharded above the size limit", "[hf]") {
  config::ModelConfig m;
  m.arch = "llama";
  m.n_layer = 2;
  m.n_head = 4;
  m.n_kv_head = 2;
  m.n_embd = 32;
  m.intermediate_size = 64;
  m.vocab_size = 64;
  const auto layout = model::build_layout(m);
  std::vector<float> flat(static_cast<size_t>(layout.total));
  model::init_weights(layout, m, 1, flat.data());
  TempDir dir("dstrain_hf_shards");
  checkpoint::save_hf_model(dir.file("out"), m, layout, flat.data(), false, 8 * 1024);
  const auto files = checkpoint::hf_weight_files(dir.file("out"));
  CHECK(files.size() > 2);
  std::vector<float> back(flat.size());
  checkpoint::load_weights(files, layout, m.tie_embeddings, back.data());
  CHECK(back == flat);
  CHECK(config::read_hf_config(dir.file("out")).kv_heads() == 2);
}
