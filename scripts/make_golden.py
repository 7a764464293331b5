#!/usr/bin/python3
"""Reference numbers from PyTorch for dstrain's golden tests.

Builds GPT-2 in plain PyTorch with exactly Hugging Face's semantics and parameter
names (Conv1D weights stored [in, out], lm_head tied to wte), runs one batch and
writes test/golden/gpt_small.safetensors:

  param.<hf name>   every initial parameter (F32)
  inputs, targets   [B, T] token ids (I32); targets are inputs shifted by one
  logits            [B, T, V]
  loss              [1], mean cross-entropy over all B*T positions
  grad.<hf name>    every parameter's gradient at the initial weights
  adamw_losses      [10], the loss before each of 10 AdamW steps on the same batch

and a human-readable summary beside it (gpt_small.json). The safetensors file is
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
import math
import os
import struct
import sys
import tempfile

import torch
import torch.nn.functional as F
from torch import nn

FIXTURE = "gpt_small"
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


class Conv1D(nn.Module):
    """Hugging Face's Conv1D: a linear layer whose weight is stored [in, out]."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        shape = x.shape[:-1] + (self.weight.shape[1],)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["n_embd"]
        self.n_head = cfg["n_head"]
        self.c_attn = Conv1D(c, 3 * c)
        self.c_proj = Conv1D(c, c)
        t = cfg["block_size"]
        self.register_buffer("mask", torch.tril(torch.ones(t, t, dtype=torch.bool)), persistent=False)

    def forward(self, x):
        b, t, c = x.shape
        hs = c // self.n_head
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, hs).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(~self.mask[:t, :t], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["n_embd"]
        self.c_fc = Conv1D(c, 4 * c)
        self.c_proj = Conv1D(4 * c, c)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, eps = cfg["n_embd"], cfg["layer_norm_eps"]
        self.ln_1 = nn.LayerNorm(c, eps=eps)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(c, eps=eps)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["n_embd"]
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg["vocab_size"], c),
                wpe=nn.Embedding(cfg["block_size"], c),
                h=nn.ModuleList(Block(cfg) for _ in range(cfg["n_layer"])),
                ln_f=nn.LayerNorm(c, eps=cfg["layer_norm_eps"]),
            )
        )
        self.init_weights(cfg)

    @torch.no_grad()
    def init_weights(self, cfg):
        # One pass in named_parameters() order, so the random stream and thus every
        # weight is fixed by the seed alone (and replayable from another language).
        std = cfg["init_std"]
        residual_std = std / math.sqrt(2 * cfg["n_layer"])
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                p.normal_(0.0, residual_std)
            elif name.endswith(".weight") and ".ln_" not in name:
                p.normal_(0.0, std)
            elif name.endswith(".weight"):
                p.fill_(1.0)
            else:
                p.zero_()

    def forward(self, idx, targets):
        t = idx.shape[1]
        tr = self.transformer
        x = tr.wte(idx) + tr.wpe(torch.arange(t, dtype=torch.long))
        for block in tr.h:
            x = block(x)
        logits = tr.ln_f(x) @ tr.wte.weight.t()  # lm_head tied to wte, no bias
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss


def compute(cfg):
    """Every tensor of the fixture, in file order."""
    torch.manual_seed(cfg["seed"])
    model = GPT2(cfg)
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


def metadata(cfg):
    meta = {k: repr(v) if isinstance(v, float) else str(v) for k, v in cfg.items()}
    meta.update(
        {
            "arch": "gpt2",
            "tie_embeddings": "true",
            "activation": "gelu_tanh",
            "loss": "mean cross-entropy over batch_size*seq_len positions",
            "optimizer": "torch.optim.AdamW, weight decay on all parameters, no clipping",
            "generator": "scripts/make_golden.py",
            "torch_version": torch.__version__.split("+")[0],
        }
    )
    return meta


ST_DTYPES = {torch.float32: "F32", torch.int32: "I32", torch.int64: "I64", torch.float16: "F16"}
TORCH_DTYPES = {name: dtype for dtype, name in ST_DTYPES.items()}


def write_safetensors(path, tensors, meta):
    """The format by hand, laid out as the reference writer does (compact JSON,
    __metadata__ first, header padded with spaces to a multiple of 8)."""
    header = {"__metadata__": meta} if meta else {}
    blobs, offset = [], 0
    for name, t in tensors.items():
        data = t.contiguous().numpy().tobytes()  # little-endian on every supported host
        header[name] = {
            "dtype": ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = TORCH_DTYPES[entry["dtype"]]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(entry["shape"])
    return tensors, meta


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
    os.makedirs(out_dir, exist_ok=True)
    tensors = compute(CONFIG)
    meta = metadata(CONFIG)
    write_safetensors(os.path.join(out_dir, FIXTURE + ".safetensors"), tensors, meta)
    write_summary(os.path.join(out_dir, FIXTURE + ".json"), tensors, meta)
    return tensors


def check(golden_dir):
    """Regenerates into a temporary folder and compares with the committed fixture."""
    committed, committed_meta = read_safetensors(os.path.join(golden_dir, FIXTURE + ".safetensors"))
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        fresh, fresh_meta = read_safetensors(os.path.join(tmp, FIXTURE + ".safetensors"))
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
        print(f"make_golden: {FIXTURE}: {p}", file=sys.stderr)
    if problems:
        print("  hint: if the change is intended, regenerate with scripts/make_golden.py", file=sys.stderr)
        return 1
    print(f"make_golden: {FIXTURE} matches ({len(committed)} tensors, max abs difference {worst:.3g})")
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
    tensors = generate(args.out)
    print(f"make_golden: wrote {FIXTURE} to {args.out}: loss {tensors['loss'].item():.6f}, "
          f"adamw {tensors['adamw_losses'][0].item():.4f} -> {tensors['adamw_losses'][-1].item():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
