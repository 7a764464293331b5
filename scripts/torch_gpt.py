"""GPT-2 in plain PyTorch with Hugging Face's semantics and parameter names
(Conv1D weights stored [in, out], lm_head tied to wte), and safetensors read and
written by hand, so that scripts need nothing beyond Debian's python3-torch.

Shared by make_golden.py (fixtures), torch_train.py (replays and benchmarks).
"""

import json
import math
import os
import struct

import torch
import torch.nn.functional as F
from torch import nn


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
        # True: PyTorch's fused attention (FlashAttention on a GPU) for benchmarks; the default
        # spells attention out, as the golden fixtures were made.
        self.sdpa = False

    def forward(self, x):
        b, t, c = x.shape
        hs = c // self.n_head
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, hs).transpose(1, 2) for z in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))
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
        x = tr.wte(idx) + tr.wpe(torch.arange(t, dtype=torch.long, device=idx.device))
        for block in tr.h:
            x = block(x)
        logits = tr.ln_f(x) @ tr.wte.weight.t()  # lm_head tied to wte, no bias
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss


ST_DTYPES = {torch.float32: "F32", torch.int32: "I32", torch.int64: "I64", torch.float16: "F16",
             torch.bfloat16: "BF16"}
TORCH_DTYPES = {name: dtype for dtype, name in ST_DTYPES.items()}


def write_safetensors(path, tensors, meta):
    """The format by hand, laid out as the reference writer does (compact JSON,
    __metadata__ first, header padded with spaces to a multiple of 8)."""
    header = {"__metadata__": meta} if meta else {}
    blobs, offset = [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        # little-endian on every supported host; numpy has no bfloat16, so its bits go as int16
        data = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
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
