// Temporaries of a backward pass (gradients of a layer's internal activations). Only
// one layer runs its backward at a time, so all layers share one set, sized for the
// largest micro-batch.
#pragma once

#include <cstdint>

#include "config/model_config.h"
#include "tensor/memory.h"

namespace ds::model {

struct BackwardScratch {
  // Allocates on `device` (where the model's ops run) what B x T micro-batches need; attention's
  // scratch is as large as what it saves (Ops::attention_saved_floats).
  void reserve(int B, int T, const config::ModelConfig& m, int64_t attention_scratch_floats);
  int64_t bytes() const;

  // Llama: [BT, C], the gradient of a block's residual h (GPT-2's blocks keep it in their dx).
  tensor::Buffer d_res;
  tensor::Buffer d_ln;    // [BT, C]  gradient of a LayerNorm's output (blocks and the head)
  tensor::Buffer d_atty;  // [BT, C]
  tensor::Buffer d_qkv;   // [BT, 3C]
  tensor::Buffer d_att;   // [B, NH, T, T] (materialised attention), or [B, NH, T] (flash)
  tensor::Buffer d_fch;   // [BT, M] gradient of the MLP's pre-activation (M: the MLP width)
  // Llama: [BT, M], SwiGLU's activation, then the up projection's gradient (GPT-2's MLP goes
  // through its GELU in one op, matmul_gelu_backward, and needs no such buffer).
  tensor::Buffer swiglu_act;
  // Llama: q | k | v before the heads are expanded for grouped-query attention, [BT, 3C]
  // at most (a block's forward uses it too, as no backward runs meanwhile).
  tensor::Buffer d_proj;

  tensor::Device device;
};

}  // namespace ds::model
