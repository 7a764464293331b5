#!/usr/bin/env bash
# Training throughput, dsworker against PyTorch eager, same model, batch, data and
# thread count, in the same run (DESIGN.md: "Performance: where the bar is").
#
#   bench/train_bench.sh [tiny|124m|all]      (default all; BUILD_DIR, THREADS, STEPS)
#
# Prints tokens/s for both (the median over the steps after the first, which warms
# up caches and allocators) and the ratio. fp32, AdamW, text data (vocab 256).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
threads=${THREADS:-$(nproc)}
which=${1:-all}
corpus=data/fortunes.txt
[ -s "$corpus" ] || scripts/setup-deps.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median_tokens_per_s() {  # JSON lines on stdin → median tokens_per_s of steps >= 2
  /usr/bin/python3 -c '
import json, statistics, sys
xs = [r["tokens_per_s"] for r in map(json.loads, sys.stdin) if "tokens_per_s" in r and r["step"] >= 2]
print(f"{statistics.median(xs):.1f}")'
}

run() {  # name n_layer n_head n_embd seq_len micro_batch steps
  local name=$1 layers=$2 heads=$3 width=$4 seq=$5 batch=$6 steps=$7
  cat > "$work/$name.yaml" <<CFG
model: {n_layer: $layers, n_head: $heads, n_embd: $width, vocab_size: 256, block_size: $seq}
data: {train: $PWD/$corpus, seq_len: $seq, shuffle: false, val_fraction: 0}
deepspeed:
  train_micro_batch_size_per_gpu: $batch
  steps_per_print: 1
  gradient_clipping: 1.0
  optimizer: {type: AdamW, params: {lr: 0.0003, weight_decay: 0.1}}
train: {steps: $steps, device: cpu}
CFG
  OMP_NUM_THREADS=$threads "$build_dir/bin/dsworker" "$work/$name.yaml" \
    --metrics "$work/$name.ds.jsonl" 2> "$work/$name.ds.log"
  /usr/bin/python3 scripts/torch_train.py --data "$corpus" --n-layer "$layers" --n-head "$heads" \
    --n-embd "$width" --block-size "$seq" --micro-batch "$batch" --steps "$steps" \
    --lr 0.0003 --weight-decay 0.1 --clip 1.0 --threads "$threads" --json > "$work/$name.pt.jsonl"
  local ds pt
  ds=$(median_tokens_per_s < "$work/$name.ds.jsonl")
  pt=$(median_tokens_per_s < "$work/$name.pt.jsonl")
  printf '%-28s %-10s %12s %12s %8s\n' "$name (${layers}x${width}, B=$batch T=$seq)" "$threads thr" \
    "$ds" "$pt" "$(/usr/bin/python3 -c "print(f'{$ds / $pt:.2f}x')")"
}

printf '%-28s %-10s %12s %12s %8s\n' workload threads "dstrain t/s" "pytorch t/s" ratio
case $which in
  tiny) run tiny 4 4 128 128 8 "${STEPS:-30}" ;;
  124m) run gpt2-124m-shape 12 12 768 256 4 "${STEPS:-5}" ;;
  all)
    run tiny 4 4 128 128 8 "${STEPS:-30}"
    run gpt2-124m-shape 12 12 768 256 4 "${STEPS:-5}"
    ;;
  *) echo "usage: bench/train_bench.sh [tiny|124m|all]" >&2; exit 2 ;;
esac
