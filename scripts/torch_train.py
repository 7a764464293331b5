#!/usr/bin/python3
"""Trains the same GPT as dsworker, in PyTorch (eager, fp32), on the same batches.

The independent reference for dstrain's CPU trainer: the replay test compares its
losses with dsworker's step by step, and bench/train_bench.sh compares tokens/s.
Batches follow dstrain's documented sampler with shuffle off (lib/data/sampler.h):
sample i is the text window [i*T, i*T + T + 1) (wrapping around the stream), and
micro-step m of step s reads samples s*TB + m*MB ... (one data-parallel rank).
The loss of a step is the mean over its global batch, before the update.

  /usr/bin/python3 scripts/torch_train.py --data corpus.txt --steps 20 \\
      --save-init init.safetensors --json      # one JSON object per step on stdout
"""

import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_folder  # noqa: E402
from torch_gpt import GPT2, read_safetensors, write_safetensors  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="text file: bytes are tokens")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=256)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=None, help="default: block size")
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--accumulation", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--first-step", type=int, default=0,
                   help="the step whose batch comes first (to continue from a checkpoint)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=0.0, help="max gradient norm; 0: off")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init-weights", help="start from this safetensors file")
    p.add_argument("--hf", help="a Hugging Face model folder (GPT-2 or Llama): its shape and weights")
    p.add_argument("--save-init", help="write the initial weights here first")
    p.add_argument("--json", action="store_true", help="print one JSON object per step")
    p.add_argument("--device", default="cpu", help="cpu or cuda (bench/gpu_bench.sh)")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for the forward (torch.amp), fp32 weights and optimizer")
    p.add_argument("--sdpa", action="store_true",
                   help="attention through F.scaled_dot_product_attention (FlashAttention on a GPU)")
    return p.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t = args.seq_len or args.block_size
    cfg = {
        "n_layer": args.n_layer,
        "n_head": args.n_head,
        "n_embd": args.n_embd,
        "vocab_size": args.vocab_size,
        "block_size": args.block_size,
        "layer_norm_eps": 1e-5,
        "init_std": 0.02,
    }
    if args.hf:
        model, hf_cfg = hf_folder.load(args.hf)
        args.vocab_size, args.block_size = hf_cfg["vocab_size"], hf_cfg["block_size"]
    else:
        model = GPT2(cfg)
    if args.init_weights:
        tensors, _ = read_safetensors(args.init_weights)
        state = {name: tensors[name] for name, _ in model.named_parameters()}
        model.load_state_dict(state, strict=False)
    if args.save_init:
        write_safetensors(args.save_init, {n: p.detach() for n, p in model.named_parameters()}, {"format": "pt"})

    if args.sdpa:
        if not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
            sys.exit(f"--sdpa needs PyTorch 2.0 or later; this is {torch.__version__}")
        for module in model.modules():
            if hasattr(module, "sdpa"):
                module.sdpa = True
    device = torch.device(args.device)
    model.to(device)
    with open(args.data, "rb") as f:
        stream = torch.tensor(list(f.read()), dtype=torch.long)
    length = stream.numel()
    mb, gas = args.micro_batch, args.accumulation
    tb = mb * gas
    offsets = torch.arange(t + 1)

    def micro_batch(step, m):
        first = step * tb + m * mb
        rows = [stream[(((first + k) * t) + offsets) % length] for k in range(mb)]
        windows = torch.stack(rows).to(device)
        return windows[:, :-1], windows[:, 1:]

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                                  eps=args.eps, weight_decay=args.weight_decay)
    tokens_per_step = tb * t
    start = time.perf_counter()
    for step in range(args.first_step, args.first_step + args.steps):
        step_start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for m in range(gas):
            inputs, targets = micro_batch(step, m)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.bf16):
                _, loss = model(inputs, targets)
            (loss / gas).backward()
            loss_sum += loss.item()
        norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())).item()
        if args.clip > 0:
            coefficient = args.clip / (norm + 1e-6)
            if coefficient < 1:
                for p in model.parameters():
                    p.grad.mul_(coefficient)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - step_start
        record = {"step": step + 1, "loss": loss_sum / gas, "grad_norm": norm,
                  "tokens_per_s": tokens_per_step / seconds, "elapsed_s": time.perf_counter() - start}
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print(f"step {step + 1:>5} | loss {record['loss']:.4f} | grad norm {norm:.4f} | "
                  f"{record['tokens_per_s']:.0f} tok/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
