// A Llama transformer block (Hugging Face's LlamaDecoderLayer), pre-RMSNorm:
//   h = x + o_proj(attention(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1))),  n1 = rms_1(x)
//   y = h + down_proj(silu(gate_proj(n2)) * up_proj(n2)),                    n2 = rms_2(h)
// with grouped-query attention: each of the n_kv_head key/value heads serves
// n_head / n_kv_head query heads. The keys and values are expanded to every query head
// and GPT's causal attention kernel runs on them; the backward sums each group back.
#pragma once

#include "model/backward_scratch.h"
#include "model/float_carver.h"
#include "model/layer.h"
#include "tensor/memory.h"

namespace ds::model {

class LlamaBlockLayer : public Layer {
 public:
  LlamaBlockLayer(const LayerSpec& spec, const ModelLayout& layout, const config::ModelConfig& m,
                  BackwardScratch* scratch, tensor::Ops& ops);

  int64_t output_size(int B, int T) const override { return int64_t{B} * T * C_; }
  int64_t saved_size(int B, int T) const override;
  void forward(const float* weights, const MicroBatch& mb, const float* x, float* y,
               float* saved) override;
  void backward(const float* weights, float* dweights, const MicroBatch& mb, const float* x,
                const float* dy, float* dx, float* saved) override;

 private:
  struct Saved {
    float *n1, *rstd1, *qkv, *att, *atty, *res, *n2, *rstd2, *gate, *up;
  };
  Saved carve(FloatCarver& region, int B, int T) const;
  // The rotary tables for positions [0, T) (computed once per length, on the host, and
  // kept where the ops run).
  void ensure_rope(int T);

  int C_, NH_, KVH_, hs_, M_;
  float eps_;
  double theta_;
  std::optional<config::RopeScaling> scaling_;
  BackwardScratch* scratch_;
  int64_t ln1_, q_, k_, v_, o_, ln2_, gate_, up_, down_;
  int rope_T_ = 0;
  tensor::Buffer cos_, sin_;  // [T, hs/2]
};

}  // namespace ds::model
