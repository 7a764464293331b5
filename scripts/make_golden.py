#!/usr/bin/python3
"""Reference numbers from PyTorch for dstrain's golden tests.

Builds GPT-2 (torch_gpt.py) and Llama (torch_llama.py) in plain PyTorch with exactly
Hugging Face's semantics and parameter names, runs one batch through each and writes
test/golden/gpt_small.safetensors and test/golden/llama_small.safetensors:

  param.<hf name>   every initial parameter (F32)
  inputs, targets   [B, T] token ids (I32); targets are inputs shifted by one
  logits            [B, T, V]
  loss              [1], mean cross-entropy over all B*T positions
  grad.<hf name>    every parameter's gradient at the initial weights
  masked_targets, masked_loss, masked_grad.<hf name>
                    the same with every third target ignored (-100)
  adamw_losses      [10], the loss before each of 10 AdamW steps on the same batch

and a human-readable summary beside each (gpt_small.json, llama_small.json). The safetensors file is
written by hand (the format is 8 bytes of header length, a JSON header, raw data)
so this needs nothing beyond Debian's python3-torch.

  /usr/bin/python3 scripts/make_golden.py                   # regenerate test/golden/
  /usr/bin/python3 scripts/make_golden.py --check test/golden
                  # regenerate into a temporary folder, compare with the committed
                  # fixture, exit 1 on any difference above 1e-6
  scripts/make_golden.py --reference-fixture test/golden    # needs the `safetensors`
                  # package: a small file written by the reference library itself
"""

import argparse
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import GPT2, ST_DTYPES, read_safetensors, write_safetensors  # noqa: E402
from torch_llama import Llama  # noqa: E402

TOLERANCE = 1e-6

# Model, batch and optimizer of the fixture. Everything that shapes the numbers is
# here and goes into the file's __metadata__.
CONFIG = {
    "n_layer": 2,
    "n_head": 4,
    "n_embd": 64,
    "vocab_size": 96,
    "block_size": 32,
    "batch_size": 4,
    "seq_len": 32,
    "seed": 1234,
    "layer_norm_eps": 1e-5,
    "init_std": 0.02,
    "adamw_steps": 10,
    "lr": 1e-3,
    "beta1": 0.9,
    "beta2": 0.95,
    "eps": 1e-8,
    "weight_decay": 0.1,
}

# A Llama with grouped-query attention (2 key/value heads for 4 query heads), an untied
# head and Llama 3's rope_scaling, with a context short enough that one frequency is
# kept, one blended and the rest stretched.
LLAMA_CONFIG = dict(
    CONFIG,
    n_kv_head=2,
    intermediate_size=160,
    rms_norm_eps=1e-6,
    rope_theta=500000.0,
    rope_scaling={
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    },
)

# name -> (config, model class, architecture metadata)
FIXTURES = {
    "gpt_small": (CONFIG, GPT2, {"arch": "gpt2", "tie_embeddings": "true", "activation": "gelu_tanh"}),
    "llama_small": (LLAMA_CONFIG, Llama, {"arch": "llama", "tie_embeddings": "false", "activation": "silu"}),
}


def compute(cfg, model_class):
    """Every tensor of the fixture, in file order."""
    torch.manual_seed(cfg["seed"])
    model = model_class(cfg)
    b, t, v = cfg["batch_size"], cfg["seq_len"], cfg["vocab_size"]
    tokens = torch.randint(0, v, (b, t + 1))
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    out = {}
    for name, p in model.named_parameters():
        out["param." + name] = p.detach().clone()
    out["inputs"] = inputs.to(torch.int32)
    out["targets"] = targets.to(torch.int32)

    logits, loss = model(inputs, targets)
    loss.backward()
    out["logits"] = logits.detach().clone()
    out["loss"] = loss.detach().reshape(1).clone()
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().clone()

    # Loss masking: every third target ignored (PyTorch's ignore_index, -100), as prompt
    # and padding positions are; the loss is the mean over the rest.
    model.zero_grad(set_to_none=True)
    masked = targets.clone()
    masked[:, ::3] = -100
    _, masked_loss = model(inputs, masked)
    masked_loss.backward()
    out["masked_targets"] = masked.to(torch.int32)
    out["masked_loss"] = masked_loss.detach().reshape(1).clone()
    for name, p in model.named_parameters():
        out["masked_grad." + name] = p.grad.detach().clone()

    # The same model continues from its initial weights: zero_grad, then each step
    # records the loss before it updates.
    model.zero_grad(set_to_none=True)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=cfg["lr"],
        betas=(cfg["beta1"], cfg["beta2"]),
        eps=cfg["eps"],
        weight_decay=cfg["weight_decay"],
    )
    losses = []
    for _ in range(cfg["adamw_steps"]):
        optimizer.zero_grad(set_to_none=True)
        _, step_loss = model(inputs, targets)
        losses.append(step_loss.item())
        step_loss.backward()
        optimizer.step()
    out["adamw_losses"] = torch.tensor(losses, dtype=torch.float32)
    return out


def metadata(cfg, arch):
    meta = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            meta.update({f"{k}.{sub}": repr(x) if isinstance(x, float) else str(x) for sub, x in v.items()})
        else:
            meta[k] = repr(v) if isinstance(v, float) else str(v)
    meta.update(arch)
    meta.update(
        {
            "loss": "mean cross-entropy over batch_size*seq_len positions",
            "optimizer": "torch.optim.AdamW, weight decay on all parameters, no clipping",
            "generator": "scripts/make_golden.py",
            "torch_version": torch.__version__.split("+")[0],
        }
    )
    return meta


def write_summary(path, tensors, meta):
    """A small JSON for people: the numbers that matter and a peek at each tensor."""
    summary = {
        "metadata": meta,
        "loss": tensors["loss"].item(),
        "adamw_losses": tensors["adamw_losses"].tolist(),
        "tensors": {
            name: {
                "dtype": ST_DTYPES[t.dtype],
                "shape": list(t.shape),
                "sum": float(t.double().sum()),
                "first": t.reshape(-1)[:4].tolist(),
            }
            for name, t in tensors.items()
        },
    }
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


def generate(out_dir):
    """Writes every fixture; returns name -> tensors."""
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for name, (cfg, model_class, arch) in FIXTURES.items():
        tensors = compute(cfg, model_class)
        meta = metadata(cfg, arch)
        write_safetensors(os.path.join(out_dir, name + ".safetensors"), tensors, meta)
        write_summary(os.path.join(out_dir, name + ".json"), tensors, meta)
        written[name] = tensors
    return written


def check(golden_dir):
    """Regenerates into a temporary folder and compares with the committed fixtures."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        failed = 0
        for name in FIXTURES:
            failed |= check_one(name, os.path.join(golden_dir, name + ".safetensors"),
                                os.path.join(tmp, name + ".safetensors"))
    return failed


def check_one(fixture, committed_path, fresh_path):
    committed, committed_meta = read_safetensors(committed_path)
    fresh, fresh_meta = read_safetensors(fresh_path)
    problems = []
    for key in sorted(set(committed_meta) | set(fresh_meta)):
        if key != "torch_version" and committed_meta.get(key) != fresh_meta.get(key):
            problems.append(f"metadata {key}: {committed_meta.get(key)!r} != {fresh_meta.get(key)!r}")
    if list(committed) != list(fresh):
        problems.append(f"tensor names differ: {sorted(set(committed) ^ set(fresh))}")
    worst = 0.0
    for name in committed:
        if name not in fresh:
            continue
        a, b = committed[name], fresh[name]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{name}: {a.dtype}{list(a.shape)} != {b.dtype}{list(b.shape)}")
            continue
        diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
        worst = max(worst, diff)
        if not diff <= TOLERANCE:
            problems.append(f"{name}: max abs difference {diff:.3g} > {TOLERANCE}")
    for p in problems:
        print(f"make_golden: {fixture}: {p}", file=sys.stderr)
    if problems:
        print("  hint: if the change is intended, regenerate with scripts/make_golden.py", file=sys.stderr)
        return 1
    print(f"make_golden: {fixture} matches ({len(committed)} tensors, max abs difference {worst:.3g})")
    return 0


def reference_fixture(out_dir):
    """A small file written by the reference safetensors library, so the C++ reader is
    tested against the real writer (every dtype dstrain uses, a scalar, an empty
    tensor, metadata). Values are simple enough to restate in the test."""
    import numpy as np
    import safetensors

    arrays = {
        "f32": ("float32", np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5 - 1.0),
        "f16": ("float16", np.array([1.0, -2.5, 65504.0], dtype=np.float16)),
        # bf16 has no numpy type: its bits are the top half of the float32 bits.
        "bf16": ("bfloat16", (np.array([1.0, -2.0, 0.15625, 3.0], dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)),
        "i32": ("int32", np.array([[-1, 2], [3, -2147483648]], dtype=np.int32)),
        "i64": ("int64", np.array([1 << 40, -5], dtype=np.int64)),
        "u16": ("uint16", np.array([0, 1, 65535], dtype=np.uint16)),
        "scalar": ("float32", np.array(7.25, dtype=np.float32)),
        "empty": ("float32", np.zeros((0, 4), dtype=np.float32)),
    }
    if hasattr(safetensors, "TensorSpec"):  # 0.7 and later take raw pointers
        specs = {
            name: safetensors.TensorSpec(dtype=dtype, shape=list(a.shape), data_ptr=a.ctypes.data, data_len=a.nbytes)
            for name, (dtype, a) in arrays.items()
        }
    else:
        specs = {name: {"dtype": dtype, "shape": list(a.shape), "data": a.tobytes()} for name, (dtype, a) in arrays.items()}
    path = os.path.join(out_dir, "reference_written.safetensors")
    safetensors.serialize_file(specs, path, metadata={"format": "pt", "writer": "safetensors (python)"})
    print(f"make_golden: wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--out", default=os.path.join(root, "test", "golden"), help="folder to write")
    parser.add_argument("--check", metavar="DIR", help="compare a regenerated fixture with DIR's")
    parser.add_argument("--reference-fixture", metavar="DIR", help="write DIR/reference_written.safetensors")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    if args.check:
        return check(args.check)
    if args.reference_fixture:
        reference_fixture(args.reference_fixture)
        return 0
    for name, tensors in generate(args.out).items():
        print(f"make_golden: wrote {name} to {args.out}: loss {tensors['loss'].item():.6f}, "
              f"adamw {tensors['adamw_losses'][0].item():.4f} -> {tensors['adamw_losses'][-1].item():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
