#!/usr/bin/env bash
# An exported checkpoint, loaded by an independent PyTorch script, gives the loss that
# dsworker reports: train 6 steps at ZeRO-3 in bf16 (checkpoint at the end), export the
# fp32 weights with dsckpt, let PyTorch compute step 7's loss from them, and compare with
# the loss dsworker reports for step 7 after resuming. Skips (77) without torch.
set -euo pipefail
bin_dir=$1
src_dir=$2
source "$src_dir/test/torch_test_setup.sh" 200000
cat > "$work/train.yaml" <<CFG
model: {n_layer: 2, n_head: 4, n_embd: 64, vocab_size: 256, block_size: 64}
data: {train: train.txt, seq_len: 64, shuffle: false, val_fraction: 0}
deepspeed:
  train_micro_batch_size_per_gpu: 4
  gradient_accumulation_steps: 2
  steps_per_print: 1
  zero_optimization: {stage: 3}
  optimizer: {type: AdamW, params: {lr: 0.003, weight_decay: 0.1}}
train: {steps: 7}
checkpoint: {dir: ckpt}
CFG
"$bin_dir/dsworker" "$work/train.yaml" --steps 6 --quiet
"$bin_dir/dsckpt" export "$work/ckpt" -o "$work/export.safetensors"
"$bin_dir/dsworker" "$work/train.yaml" --metrics "$work/dstrain.jsonl" --quiet
/usr/bin/python3 "$src_dir/scripts/torch_train.py" --data "$work/train.txt" --n-layer 2 --n-head 4 \
  --n-embd 64 --block-size 64 --micro-batch 4 --accumulation 2 --first-step 6 --steps 1 \
  --lr 0 --init-weights "$work/export.safetensors" --json > "$work/torch.jsonl"
/usr/bin/python3 - "$work/torch.jsonl" "$work/dstrain.jsonl" <<'PY'
import json, sys
theirs = json.loads(open(sys.argv[1]).readline())
ours = [r for r in map(json.loads, open(sys.argv[2])) if r.get("step") == 7 and "loss" in r][0]
rel = abs(theirs["loss"] - ours["loss"]) / abs(ours["loss"])
print(f"step 7 loss: PyTorch from the exported weights {theirs['loss']:.7f}, dsworker {ours['loss']:.7f}, rel {rel:.2e}")
sys.exit(0 if rel <= 1e-5 else 1)
PY
