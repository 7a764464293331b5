// The checks of the models against PyTorch's golden fixtures (test/golden/*.safetensors, made
// by scripts/make_golden.py), on whichever device an Ops computes: golden_test.cpp runs them on
// the CPU, cuda_golden_test.cpp on a GPU. Tolerances are the issue's: loss within 1e-5
// relative, each gradient within 1e-4 of its tensor's largest magnitude, AdamW losses within
// 1e-4, the head's probabilities within 1e-6 of softmax(PyTorch's logits).
#pragma once

#include <string>

#include "tensor/ops.h"

namespace golden {

// The fixtures: a GPT-2 and a Llama (grouped-query attention, untied head, Llama 3's
// rope_scaling).
inline const char* const kFixtures[] = {"gpt_small", "llama_small"};

void check_forward_backward(const std::string& fixture, ds::tensor::Ops& ops);
// Every third target ignored: the loss is the mean over the others, ignored positions give no
// gradient (PyTorch's cross_entropy with ignore_index -100).
void check_masked(const std::string& fixture, ds::tensor::Ops& ops);
// Ten AdamW steps (the update on the host; the model on ops' device).
void check_adamw(const std::string& fixture, ds::tensor::Ops& ops);
// The second forward and backward allocate nothing, on the host or on ops' device.
void check_no_allocation(const std::string& fixture, ds::tensor::Ops& ops);

// A check on every fixture, with the model on `ops`' device.
using Check = void (*)(const std::string& fixture, ds::tensor::Ops& ops);
void for_each_fixture(Check check, ds::tensor::Ops& ops);

}  // namespace golden
