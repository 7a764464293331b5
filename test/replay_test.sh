#!/usr/bin/env bash
# dsworker against an independent PyTorch replay: the same initial weights
# (--init-weights), the same batches (shuffle off), AdamW with gradient accumulation
# and clipping; the 20 losses must agree within 1e-3 relative. Skips (77) without torch.
set -euo pipefail
bin_dir=$1
src_dir=$2
source "$src_dir/test/torch_test_setup.sh" 300000

/usr/bin/python3 "$src_dir/scripts/torch_train.py" --data "$work/train.txt" --n-layer 2 --n-head 4 \
  --n-embd 64 --block-size 64 --micro-batch 4 --accumulation 2 --steps 20 --lr 1e-3 \
  --beta1 0.9 --beta2 0.95 --weight-decay 0.1 --clip 1.0 --seed 7 \
  --save-init "$work/init.safetensors" --json > "$work/torch.jsonl"

cat > "$work/train.yaml" <<CFG
model: {n_layer: 2, n_head: 4, n_embd: 64, vocab_size: 256, block_size: 64}
data: {train: train.txt, seq_len: 64, shuffle: false, val_fraction: 0}
deepspeed:
  train_micro_batch_size_per_gpu: 4
  gradient_accumulation_steps: 2
  gradient_clipping: 1.0
  steps_per_print: 1
  optimizer: {type: AdamW, params: {lr: 0.001, betas: [0.9, 0.95], eps: 1.0e-8, weight_decay: 0.1}}
train: {steps: 20, device: cpu}
CFG
"$bin_dir/dsworker" "$work/train.yaml" --init-weights "$work/init.safetensors" \
  --metrics "$work/dstrain.jsonl"

/usr/bin/python3 - "$work/torch.jsonl" "$work/dstrain.jsonl" <<'PY'
import json, sys
torch_runs = [json.loads(l) for l in open(sys.argv[1])]
ours = [r for r in map(json.loads, open(sys.argv[2])) if "loss" in r]
assert len(torch_runs) == len(ours) == 20, (len(torch_runs), len(ours))
worst = 0.0
for a, b in zip(torch_runs, ours):
    assert a["step"] == b["step"]
    rel = abs(a["loss"] - b["loss"]) / abs(a["loss"])
    worst = max(worst, rel)
    print(f"step {a['step']:>2}: torch {a['loss']:.6f}  dstrain {b['loss']:.6f}  rel {rel:.2e}")
print(f"worst relative difference {worst:.2e} (limit 1e-3)")
sys.exit(0 if worst <= 1e-3 else 1)
PY
