"""A Llama decoder in plain PyTorch with the semantics and parameter names of Hugging
Face's LlamaForCausalLM (RMSNorm, rotary embeddings with rotate_half and Llama 3's
rope_scaling, grouped-query attention, SwiGLU, nn.Linear weights [out, in], no
biases), written from the architecture's description so that the golden fixtures need
nothing beyond Debian's python3-torch. Used by make_golden.py.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, c, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def inverse_frequencies(cfg):
    """theta^(-2i/hs) in fp32, with Llama 3's rope_scaling when the config has one."""
    hs = cfg["n_embd"] // cfg["n_head"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hs, 2, dtype=torch.int64).float() / hs))
    s = cfg.get("rope_scaling")
    if not s:
        return inv
    context = s["original_max_position_embeddings"]
    low_wavelen = context / s["low_freq_factor"]
    high_wavelen = context / s["high_freq_factor"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / s["factor"], inv)
    smooth = (context / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
    blended = (1 - smooth) * scaled / s["factor"] + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, scaled)


def rotate(x, cos, sin):
    """x [b, heads, t, hs]: channel i pairs with i + hs/2."""
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + turned * sin


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, self.n_head = cfg["n_embd"], cfg["n_head"]
        self.n_kv = cfg["n_kv_head"]
        self.hs = c // self.n_head
        self.q_proj = nn.Linear(c, self.n_head * self.hs, bias=False)
        self.k_proj = nn.Linear(c, self.n_kv * self.hs, bias=False)
        self.v_proj = nn.Linear(c, self.n_kv * self.hs, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.hs, c, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_head, self.hs).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.hs).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.hs).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        group = self.n_head // self.n_kv  # query head h reads key/value head h // group
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hs)
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, -1)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, m = cfg["n_embd"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(c, m, bias=False)
        self.up_proj = nn.Linear(c, m, bias=False)
        self.down_proj = nn.Linear(m, c, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, eps = cfg["n_embd"], cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(c, eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(c, eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["n_embd"]
        self.model = nn.ModuleDict(
            dict(
                embed_tokens=nn.Embedding(cfg["vocab_size"], c),
                layers=nn.ModuleList(Layer(cfg) for _ in range(cfg["n_layer"])),
                norm=RMSNorm(c, cfg["rms_norm_eps"]),
            )
        )
        self.lm_head = nn.Linear(c, cfg["vocab_size"], bias=False)
        self.register_buffer("inv_freq", inverse_frequencies(cfg), persistent=False)
        self.init_weights(cfg)
        if cfg.get("tie_embeddings"):
            self.lm_head.weight = self.model.embed_tokens.weight

    @torch.no_grad()
    def init_weights(self, cfg):
        # One pass in named_parameters() order: normal(0, init_std) for every matrix,
        # ones for the norms (Hugging Face's Llama has no residual scaling).
        for name, p in self.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, cfg["init_std"])
            else:
                p.fill_(1.0)

    def forward(self, idx, targets):
        t = idx.shape[1]
        angles = torch.arange(t, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        angles = torch.cat((angles, angles), dim=-1)
        cos, sin = angles.cos(), angles.sin()
        x = self.model.embed_tokens(idx)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        logits = self.lm_head(self.model.norm(x))
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss
