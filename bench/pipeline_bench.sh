#!/usr/bin/env bash
# The pipeline bubble: measured idle time of each stage beside DeepSpeed's theoretical
# (S-1)/(M+S-1) for S stages and M micro-batches (issue 7's speed point). fp32, a GPT of
# 8 layers x 256 at micro-batch 2, T=128; one rank per core (S ranks).
#
#   bench/pipeline_bench.sh            (BUILD_DIR, STEPS, STAGES="2", MICRO="1 2 4 8")
#
# A stage's bubble is the part of its step spent neither computing nor updating:
#   1 - (forward + backward) / (step time - optimizer time),
# from wall_clock_breakdown's per-step times; the table shows the median over steps >= 2
# and the mean over stages. With more stages than cores the ranks share cores and the
# numbers say little: run it where S <= cores.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
steps=${STEPS:-6}
stages_list=${STAGES:-2}
micro_list=${MICRO:-1 2 4 8}
corpus=data/fortunes.txt
[ -s "$corpus" ] || scripts/setup-deps.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '%-8s %-6s %12s %12s %12s\n' stages micro "ms/step" "bubble" "(S-1)/(M+S-1)"
for stages in $stages_list; do
  for micro in $micro_list; do
    name="s${stages}m${micro}"
    cat > "$work/$name.yaml" <<CFG
model: {n_layer: 8, n_head: 4, n_embd: 256, vocab_size: 256, block_size: 128}
data: {train: $PWD/$corpus, seq_len: 128, shuffle: false, val_fraction: 0}
deepspeed:
  train_micro_batch_size_per_gpu: 2
  gradient_accumulation_steps: $micro
  steps_per_print: 1
  wall_clock_breakdown: true
  pipeline: {stages: $stages, partition: uniform}
  optimizer: {type: AdamW, params: {lr: 0.0003}}
train: {steps: $steps}
CFG
    "$build_dir/bin/dslaunch" --num_gpus "$stages" "$work/$name.yaml" \
      --metrics "$work/$name.{rank}.jsonl" --quiet > "$work/$name.log" 2>&1 ||
      { cat "$work/$name.log"; exit 1; }
    /usr/bin/python3 - "$work" "$name" "$stages" "$micro" <<'PY'
import glob, json, statistics, sys
work, name, stages, micro = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
bubbles, step_ms = [], []
for path in sorted(glob.glob(f"{work}/{name}.*.jsonl")):
    records = [r for r in map(json.loads, open(path)) if "time_ms" in r]
    per_step, previous = [], 0.0
    for r in records:
        wall = (r["elapsed_s"] - previous) * 1000
        previous = r["elapsed_s"]
        t = r["time_ms"]
        if r["step"] >= 2:
            per_step.append(1 - (t["forward"] + t["backward"]) / (wall - t["optimizer"]))
            step_ms.append(wall)
    bubbles.append(statistics.median(per_step))
theory = (stages - 1) / (micro + stages - 1)
print(f"{stages:<8} {micro:<6} {statistics.median(step_ms):12.0f} "
      f"{statistics.mean(bubbles):12.3f} {theory:12.3f}")
PY
  done
done
