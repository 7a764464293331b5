"""Hugging Face model folders (config.json + safetensors, sharded with an index) read and
written with plain PyTorch, for the checks that compare dstrain with an independent
implementation: the folder's config becomes a torch_gpt.GPT2 or torch_llama.Llama with
the folder's weights.

  /usr/bin/python3 scripts/hf_folder.py make OUT --arch llama --shards 2 --dtype bf16
      # a small random model, as `transformers` would save it
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import GPT2, read_safetensors, write_safetensors  # noqa: E402
from torch_llama import Llama  # noqa: E402


def reference_config(hf):
    """config.json -> the dict torch_gpt / torch_llama take."""
    if hf.get("model_type") == "llama":
        return {
            "arch": "llama",
            "n_layer": hf["num_hidden_layers"],
            "n_head": hf["num_attention_heads"],
            "n_kv_head": hf.get("num_key_value_heads", hf["num_attention_heads"]),
            "n_embd": hf["hidden_size"],
            "intermediate_size": hf["intermediate_size"],
            "vocab_size": hf["vocab_size"],
            "block_size": hf.get("max_position_embeddings", 2048),
            "rms_norm_eps": hf.get("rms_norm_eps", 1e-6),
            "rope_theta": hf.get("rope_theta", 10000.0),
            "rope_scaling": hf.get("rope_scaling"),
            "tie_embeddings": hf.get("tie_word_embeddings", False),
            "init_std": 0.02,
        }
    return {
        "arch": "gpt2",
        "n_layer": hf["n_layer"],
        "n_head": hf["n_head"],
        "n_embd": hf["n_embd"],
        "vocab_size": hf["vocab_size"],
        "block_size": hf["n_positions"],
        "layer_norm_eps": hf.get("layer_norm_epsilon", 1e-5),
        "init_std": 0.02,
    }


def load(folder):
    """The reference model of a folder, with its weights (up-cast to fp32)."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = reference_config(json.load(f))
    model = (Llama if cfg["arch"] == "llama" else GPT2)(cfg)
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    tensors = {}
    for name in files:
        tensors.update(read_safetensors(os.path.join(folder, name))[0])
    state = {}
    for name, p in model.named_parameters():
        if name not in tensors and name == "lm_head.weight":
            continue  # tied: the embedding
        state[name] = tensors[name].float()
    missing = [n for n, _ in model.named_parameters() if n not in state and n != "lm_head.weight"]
    if missing:
        raise SystemExit(f"{folder}: missing {missing}")
    model.load_state_dict(state, strict=False)
    return model, cfg


def byte_to_unicode():
    """GPT-2's printable stand-ins for the 256 bytes (byte-level BPE's alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_tokenizer(out):
    """A byte-level BPE tokenizer.json (the 256 bytes, two merges) with Llama 3's BOS and EOS
    as added special tokens 258 and 259, and the tokenizer_config.json naming them."""
    table = byte_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    vocab[table[ord("t")] + table[ord("h")]] = 256
    vocab[table[ord(" ")] + table[ord("t")]] = 257
    special = lambda i, text: {"id": i, "content": text, "single_word": False, "lstrip": False,
                               "rstrip": False, "normalized": False, "special": True}
    tokenizer = {
        "version": "1.0",
        "added_tokens": [special(258, "<|begin_of_text|>"), special(259, "<|end_of_text|>")],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [f"{table[ord('t')]} {table[ord('h')]}", f"{table[ord(' ')]} {table[ord('t')]}"]},
    }
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}, f)


def make(out, arch, shards, dtype, seed, tokenizer=False):
    """A small random model folder: config.json and weights in `shards` files (and with
    `tokenizer`, a tokenizer.json whose 260 tokens the vocabulary covers)."""
    torch.manual_seed(seed)
    if arch == "llama":
        hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
              "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 128,
              "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
              "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
              "hidden_act": "silu", "torch_dtype": dtype}
    else:
        hf = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 64, "n_layer": 2,
              "n_head": 4, "vocab_size": 256, "n_positions": 128, "layer_norm_epsilon": 1e-5,
              "activation_function": "gelu_new", "torch_dtype": dtype}
    if tokenizer:
        hf["vocab_size"] = 260
    model = (Llama if arch == "llama" else GPT2)(reference_config(hf))
    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    params = [(n, p.detach().to(torch_dtype)) for n, p in model.named_parameters()]
    os.makedirs(out, exist_ok=True)
    if tokenizer:
        write_tokenizer(out)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
    if shards == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), dict(params), {"format": "pt"})
        return
    weight_map = {}
    per = (len(params) + shards - 1) // shards
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = dict(params[s * per:(s + 1) * per])
        write_safetensors(os.path.join(out, name), part, {"format": "pt"})
        weight_map.update({n: name for n in part})
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="write a small random model folder")
    m.add_argument("out")
    m.add_argument("--arch", choices=["llama", "gpt2"], default="llama")
    m.add_argument("--shards", type=int, default=1)
    m.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    m.add_argument("--seed", type=int, default=7)
    m.add_argument("--tokenizer", action="store_true", help="also write a byte-level BPE tokenizer.json")
    args = parser.parse_args()
    if args.command == "make":
        make(args.out, args.arch, args.shards, args.dtype, args.seed, args.tokenizer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
