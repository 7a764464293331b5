#!/usr/bin/env bash
# ZeRO on CPU ranks: step time of stages 0-3 on 2 ranks, and 2 ranks against 1 rank
# (issue 6's speed points). fp32, AdamW, a GPT of 6 layers x 384 at B=4 T=256 per rank;
# stages 2 and 3 also with per-block reduce buckets.
#
#   bench/zero_bench.sh            (BUILD_DIR, STEPS)
#
# Prints the median step time (steps after the first) and tokens/s for each run. Each
# rank gets cores / ranks threads, so 2 ranks on a 2-core machine have one core each;
# the one-rank run gets one core too.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
steps=${STEPS:-8}
corpus=data/fortunes.txt
[ -s "$corpus" ] || scripts/setup-deps.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() {  # JSON lines → median of a field over steps >= 2
  /usr/bin/python3 -c '
import json, statistics, sys
key = sys.argv[1]
xs = [r[key] for r in map(json.loads, sys.stdin) if key in r and r.get("step", 0) >= 2]
print(f"{statistics.median(xs):.1f}")' "$1"
}

run() {  # name ranks stage [more zero_optimization keys]
  local name=$1 ranks=$2 stage=$3 zero=${4:-}
  cat > "$work/$name.yaml" <<CFG
model: {n_layer: 6, n_head: 6, n_embd: 384, vocab_size: 256, block_size: 256}
data: {train: $PWD/$corpus, seq_len: 256, shuffle: false, val_fraction: 0}
deepspeed:
  train_micro_batch_size_per_gpu: 4
  steps_per_print: 1
  zero_optimization: {stage: $stage, overlap_comm: true$zero}
  optimizer: {type: AdamW, params: {lr: 0.0003}}
train: {steps: $steps, device: cpu}
CFG
  if [ "$ranks" = 1 ]; then
    # One core, as each of the 2 ranks gets: the scaling question is ranks per core.
    OMP_NUM_THREADS=1 "$build_dir/bin/dsworker" "$work/$name.yaml" --metrics "$work/$name.jsonl" \
      --quiet
  else
    "$build_dir/bin/dslaunch" --num_gpus "$ranks" "$work/$name.yaml" \
      --metrics "$work/$name.jsonl" --quiet > /dev/null
  fi
  local tps ms
  tps=$(median tokens_per_s < "$work/$name.jsonl")
  ms=$(/usr/bin/python3 -c "print(f'{4 * 256 * $ranks / $tps * 1000:.0f}')")
  printf '%-22s %6s ranks  stage %s  %10s tok/s  %8s ms/step\n' "$name" "$ranks" "$stage" "$tps" "$ms"
}

run one-rank 1 0
for stage in 0 1 2 3; do run "two-ranks-stage$stage" 2 "$stage"; done
# A block has 1.77M parameters: 2M-element buckets reduce each block while the next one's
# backward runs (the default 5e8 makes one bucket of the whole model, reduced at the end).
for stage in 2 3; do run "two-ranks-stage$stage-2M" 2 "$stage" ", reduce_bucket_size: 2000000"; done
