#!/usr/bin/env bash
# Hugging Face folders in and out, against an independent PyTorch implementation:
# a small random Llama saved as transformers saves it (bf16, two shards and an index) is
# trained from (`model: {from_hf: DIR}`) and its first loss must be PyTorch's for the
# same batch; after 3 steps, `dsckpt export --format hf` writes a (sharded) folder from which
# PyTorch computes step 4's loss, which must be the one dsworker reports after resuming.
# Last, a folder with a tokenizer.json fine-tunes on instruction data with that tokenizer.
# Skips (77) without torch.
set -euo pipefail
bin_dir=$1
src_dir=$2
source "$src_dir/test/torch_test_setup.sh" 200000
/usr/bin/python3 "$src_dir/scripts/hf_folder.py" make "$work/hf" --arch llama --shards 2 \
  --dtype bfloat16
cat > "$work/train.yaml" <<CFG
model: {from_hf: hf}
data: {train: train.txt, seq_len: 64, shuffle: false, val_fraction: 0}
deepspeed:
  train_micro_batch_size_per_gpu: 4
  gradient_accumulation_steps: 2
  steps_per_print: 1
  optimizer: {type: AdamW, params: {lr: 0.003, weight_decay: 0.1}}
train: {steps: 4}
checkpoint: {dir: ckpt}
CFG
"$bin_dir/dsworker" "$work/train.yaml" --steps 3 --metrics "$work/first.jsonl" --quiet
"$bin_dir/dsckpt" export "$work/ckpt" --format hf -o "$work/exported" --max-shard-size 200KB
"$bin_dir/dsworker" "$work/train.yaml" --metrics "$work/resumed.jsonl" --quiet
torch_loss() {  # folder first-step
  /usr/bin/python3 "$src_dir/scripts/torch_train.py" --data "$work/train.txt" --hf "$1" \
    --seq-len 64 --micro-batch 4 --accumulation 2 --first-step "$2" --steps 1 --lr 0 --json
}
torch_loss "$work/hf" 0 > "$work/torch_first.jsonl"
torch_loss "$work/exported" 3 > "$work/torch_resumed.jsonl"
/usr/bin/python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def loss(path, step):
    return [r for r in map(json.loads, open(path)) if r.get("step") == step and "loss" in r][0]["loss"]
failed = False
for what, ours, theirs in (
    ("step 1 from the Hugging Face folder", loss(f"{work}/first.jsonl", 1), loss(f"{work}/torch_first.jsonl", 1)),
    ("step 4 from the exported folder", loss(f"{work}/resumed.jsonl", 4), loss(f"{work}/torch_resumed.jsonl", 4)),
):
    rel = abs(theirs - ours) / abs(ours)
    print(f"{what}: dsworker {ours:.7f}, PyTorch {theirs:.7f}, rel {rel:.2e}")
    failed |= not rel <= 1e-5
sys.exit(1 if failed else 0)
PY
test -f "$work/exported/config.json"
grep -q '"LlamaForCausalLM"' "$work/exported/config.json"
# 500 KB of fp32 weights in files of at most 200 KB: shards and their index.
test -f "$work/exported/model.safetensors.index.json"
test -f "$work/exported/model-00003-of-00003.safetensors"

# A folder with tokenizer.json: instruction data goes through it by default.
/usr/bin/python3 "$src_dir/scripts/hf_folder.py" make "$work/hf_tok" --tokenizer
for i in $(seq 1 60); do echo "{\"instruction\": \"say the $i\", \"output\": \"the thing $i\"}"; done \
  > "$work/instructions.jsonl"
cat > "$work/instruct.yaml" <<CFG
model: {from_hf: hf_tok}
data:
  train: instructions.jsonl
  seq_len: 32
  mask_prompt: true
  template: {prompt: "Q: {instruction}\\nA: ", response: "{output}"}
deepspeed: {train_micro_batch_size_per_gpu: 4, optimizer: {type: AdamW, params: {lr: 0.003}}}
train: {steps: 5}
CFG
"$bin_dir/dsworker" "$work/instruct.yaml" > "$work/instruct.log" 2>&1 || { cat "$work/instruct.log"; exit 1; }
grep -q "hf_tok/tokenizer.json (vocabulary 260, EOS 259, BOS 258)" "$work/instruct.log" ||
  { cat "$work/instruct.log"; exit 1; }
echo "instruction data through the folder's tokenizer.json: ok"
