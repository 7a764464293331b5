#!/usr/bin/env bash
# GPT-2 124M training on one GPU: dsworker against PyTorch eager on the same GPU, same model
# (12 x 768, vocab 50257, T=1024), batch and data, in the same run (issue 10's target: >= 40%
# MFU by llm.c's formula, 6N + 6·L·C·T FLOPs per token, and faster than PyTorch).
#
#   bench/gpu_bench.sh        (BUILD_DIR, STEPS, MICRO_BATCH, PRECISION=bf16|fp32, PYTHON,
#                              DS_LIB_PATH: library folders for dsworker alone, gpu-check.sh;
#                              LLMC_MICRO_BATCH (default 64, 0 skips: the second batch),
#                              OP_PROFILE, GEMM_TABLE, KERNEL_PROFILE=0 skip a profile,
#                              UNTUNED_ROW=0 the B=64 runs with DS_GEMM_TUNING=0 and
#                              DS_CUDNN_ATTENTION=0,
#                              NCU_TIMEOUT limits each Nsight Compute run)
#
# Prints tokens/s (the median over the steps after the first two) and MFU against the GPU's
# dense peak for the precision (worker/mfu.cpp's table) for dstrain and for PyTorch twice (the
# same model as written, and with F.scaled_dot_product_attention), and the ratios; the same for
# dstrain and PyTorch with SDPA at llm.c's batch (B=64), where llm.c reports its MFU, with
# dstrain again on cuBLASLt's heuristic's first GEMM algorithms (DS_GEMM_TUNING=0) and on its
# own attention kernels (DS_CUDNN_ATTENTION=0); then
# dsworker's GPU time per op (tensor/cuda/op_profiler.h) from a short profiled run, the step's
# matrix products timed alone in each storage form (dsbench gemm), and, where Nsight Compute is
# installed, each kernel's GPU time per step and the attention kernels' counters. dsworker's
# bf16 keeps bf16 weights with fp32 master weights, runs its matmuls on bf16 tensor cores and
# the other kernels in fp32 (the LM head's logits, the MLP's hidden activations and the attention
# sublayer's qkv and output in bf16);
# PyTorch's runs the forward under bf16 autocast with fp32 weights.
# Exits 77 without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
steps=${STEPS:-12}
micro=${MICRO_BATCH:-16}
precision=${PRECISION:-bf16}

# A Python whose torch sees a GPU: on the GPU machines plain python3; Debian's is CPU-only.
python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
        2>/dev/null; then
      python=$candidate
      break
    fi
  done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Any text does (bytes are tokens, the stream wraps): setup-deps.sh's corpus, or else the
# project's own documentation (the GPU machines have no Debian packages to make the corpus).
corpus=data/fortunes.txt
if [ ! -s "$corpus" ]; then
  corpus=$work/corpus.txt
  cat README.md docs/*.md > "$corpus"
fi
bf16=false
[ "$precision" = bf16 ] && bf16=true
write_config() {  # micro-batch file
  cat > "$2" <<CFG
model: {n_layer: 12, n_head: 12, n_embd: 768, vocab_size: 50257, block_size: 1024}
data: {train: $(realpath "$corpus"), seq_len: 1024, shuffle: false, val_fraction: 0}
deepspeed:
  train_micro_batch_size_per_gpu: $1
  steps_per_print: 1
  wall_clock_breakdown: true
  gradient_clipping: 1.0
  bf16: {enabled: $bf16}
  optimizer: {type: AdamW, params: {lr: 0.0003, weight_decay: 0.1}}
train: {steps: $steps, device: cuda}
CFG
}
write_config "$micro" "$work/gpt2.yaml"

status=0
LD_LIBRARY_PATH=${DS_LIB_PATH:+$DS_LIB_PATH:}${LD_LIBRARY_PATH:-} "$build_dir/bin/dsworker" \
  "$work/gpt2.yaml" --metrics "$work/ds.jsonl" > "$work/ds.log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  cat "$work/ds.log"
  if grep -q "no CUDA device is visible" "$work/ds.log"; then exit 77; fi
  exit "$status"
fi
grep -m1 "device:" "$work/ds.log" || true
grep -m1 "matmuls:" "$work/ds.log" || true
grep -m1 "tensor-core attention variants:" "$work/ds.log" || true

summary() {  # JSON lines on stdin → "tokens/s mfu%" (medians over steps >= 3)
  python3 -c '
import json, statistics, sys
rows = [r for r in map(json.loads, sys.stdin) if "tokens_per_s" in r and r["step"] >= 3]
tps = statistics.median(r["tokens_per_s"] for r in rows)
mfu = [r["mfu"] for r in rows if "mfu" in r]
print(f"{tps:.0f} {100 * statistics.median(mfu):.1f}" if mfu else f"{tps:.0f} -")'
}
read -r ds_tps ds_mfu < <(summary < "$work/ds.jsonl")
printf '%-34s %14s %8s\n' "GPT-2 124M, B=$micro T=1024, $precision" "tokens/s" "MFU %"
printf '%-34s %14s %8s\n' "dstrain (dsworker)" "$ds_tps" "$ds_mfu"
# Where dsworker's step goes (wall_clock_breakdown; each phase waits for the GPU).
python3 -c '
import json, statistics, sys
rows = [r["time_ms"] for r in map(json.loads, sys.stdin) if "time_ms" in r and r["step"] >= 3]
if rows:
    print("  per step, ms: " + ", ".join(
        f"{k} {statistics.median(r[k] for r in rows):.1f}" for k in rows[0]))' < "$work/ds.jsonl"

# Where dsworker's GPU time goes, op by op, from a short second run with DS_GPU_OP_PROFILE=1 (its
# timing events cost the host a little, so it is not the run measured above). OP_PROFILE=0 skips
# it. Runs last, so that a time limit cuts the profile rather than the comparison.
op_profile() {
  [ "${OP_PROFILE:-1}" = 1 ] || return 0
  echo
  sed "s/steps: $steps,/steps: 4,/" "$work/gpt2.yaml" > "$work/profile.yaml"
  if DS_GPU_OP_PROFILE=1 LD_LIBRARY_PATH=${DS_LIB_PATH:+$DS_LIB_PATH:}${LD_LIBRARY_PATH:-} \
      "$build_dir/bin/dsworker" "$work/profile.yaml" > "$work/profile.log" 2>&1; then
    # The two tables (time by op, idle gaps between ops): each heading and its indented lines.
    awk '/GPU time by op|GPU idle between ops/ {on = 1; print; next} on && /^  / {print; next}
         {on = 0}' "$work/profile.log"
  else
    echo "the profiled run failed:"
    tail -n 20 "$work/profile.log"
  fi
}

# The step's matrix products alone in each storage form (dsbench gemm): what bf16 activations would
# buy the matmuls. GEMM_TABLE=0 skips it.
gemm_table() {
  [ "${GEMM_TABLE:-1}" = 1 ] || return 0
  echo
  LD_LIBRARY_PATH=${DS_LIB_PATH:+$DS_LIB_PATH:}${LD_LIBRARY_PATH:-} "$build_dir/bin/dsbench" gemm \
    --tokens $((micro * 1024)) || echo "dsbench gemm failed"
}

# Each kernel's GPU time, and the attention kernels' utilisation, from Nsight Compute where the
# machine has it (KERNEL_PROFILE=0 skips it): steps 2 and 3 of a 3-step run with every launch
# timed, then one launch of each attention kernel with the counters that say what limits it.
kernel_profile() {
  [ "${KERNEL_PROFILE:-1}" = 1 ] || return 0
  local ncu
  ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2> /dev/null |
        head -n 1 || true)
  [ -n "$ncu" ] || { echo; echo "no ncu: no per-kernel profile"; return 0; }
  echo
  # Steps 2 and 3: the first step's planning, GEMM algorithm and attention variant timing are
  # left out (dsworker starts the profiler at DS_CUDA_PROFILE_FROM_STEP).
  sed "s/steps: $steps,/steps: 3,/" "$work/gpt2.yaml" > "$work/ncu.yaml"
  local run=(env "LD_LIBRARY_PATH=${DS_LIB_PATH:+$DS_LIB_PATH:}${LD_LIBRARY_PATH:-}"
             DS_CUDA_PROFILE_FROM_STEP=2 "$build_dir/bin/dsworker" "$work/ncu.yaml")
  # Each ncu run gets a time limit (NCU_TIMEOUT, default 120 s): a profiler lock held elsewhere
  # must not stall the benchmark.
  local limit=${NCU_TIMEOUT:-120}
  timeout -k 10 "$limit" "$ncu" --profile-from-start off --metrics gpu__time_duration.sum \
    --csv --print-units base "${run[@]}" 2> "$work/ncu.err" |
    python3 bench/ncu_kernel_table.py --per-step 2 || tail -n 5 "$work/ncu.err"
  echo
  # Per step (this config: 12 layers, one micro-batch) 12 forwards, then the backward's 12
  # (dq, dkv) pairs, last layer first: skipping step 2's first 11 forwards leaves the last
  # layer's forward, dq and dkv.
  echo "attention kernels (the last layer's forward, dQ and dK/dV of step 2):"
  local metrics=gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed
  metrics+=,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
  metrics+=,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread
  metrics+=,launch__occupancy_limit_registers,launch__occupancy_limit_shared_mem
  metrics+=,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum
  metrics+=,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum
  metrics+=,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio
  metrics+=,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio
  metrics+=,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio
  metrics+=,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio
  metrics+=,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio
  metrics+=,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio
  metrics+=,smsp__issue_active.avg.pct_of_peak_sustained_active
  timeout -k 10 "$limit" "$ncu" --profile-from-start off --metrics "$metrics" --csv \
    --print-units base --kernel-name-base demangled \
    -k 'regex:tc_attention::(forward|dq|dkv)_kernel' --launch-skip 11 --launch-count 3 \
    "${run[@]}" 2> "$work/ncu.err" | python3 bench/ncu_kernel_table.py ||
    tail -n 5 "$work/ncu.err"
}

flag=()
[ "$bf16" = true ] && flag=(--bf16)
version=""
[ -n "$python" ] && version=$("$python" -c 'import torch; print(torch.__version__)')
# PyTorch at micro-batch $1 in the given variants, each row against dstrain's $2 tokens/s and $3
# MFU at the same batch: "eager" is the same model as written (attention spelled out, as dstrain
# computes it), "sdpa" uses PyTorch's fused attention (FlashAttention), the stronger baseline.
torch_rows() {
  local batch=$1 tps=$2 mfu=$3
  shift 3
  for variant in "$@"; do
    extra=()
    [ "$variant" = sdpa ] && extra=(--sdpa)
    label="PyTorch $version eager"
    [ "$variant" = sdpa ] && label="$label + SDPA"
    if ! "$python" scripts/torch_train.py --data "$corpus" --n-layer 12 --n-head 12 \
        --n-embd 768 --vocab-size 50257 --block-size 1024 --micro-batch "$batch" \
        --steps "$steps" --lr 0.0003 --weight-decay 0.1 --clip 1.0 --device cuda "${flag[@]}" \
        "${extra[@]}" --json > "$work/pt-$variant-$batch.jsonl"; then
      echo "$label: did not run (its error is above)"
      continue
    fi
    read -r pt_tps _ < <(summary < "$work/pt-$variant-$batch.jsonl")
    # The same model and peak: PyTorch's MFU scales with its tokens/s.
    pt_mfu=$(python3 -c "m='$mfu'; print('-' if m == '-' else f'{float(m) * $pt_tps / $tps:.1f}')")
    printf '%-34s %14s %8s   dstrain / it: %s\n' "$label" "$pt_tps" "$pt_mfu" \
      "$(python3 -c "print(f'{$tps / $pt_tps:.2f}x')")"
  done
}

# llm.c's batch for GPT-2 124M on one GPU (-b 64 -t 1024), at which it reports its MFU:
# dsworker, and PyTorch with SDPA (as written, its T x T probabilities would not fit).
# LLMC_MICRO_BATCH=0 skips it.
llmc_micro=${LLMC_MICRO_BATCH:-64}
llmc_rows() {
  [ "$llmc_micro" -gt 0 ] && [ "$llmc_micro" -ne "$micro" ] || return 0
  echo
  write_config "$llmc_micro" "$work/gpt2-llmc.yaml"
  if LD_LIBRARY_PATH=${DS_LIB_PATH:+$DS_LIB_PATH:}${LD_LIBRARY_PATH:-} "$build_dir/bin/dsworker" \
      "$work/gpt2-llmc.yaml" --metrics "$work/ds-llmc.jsonl" > "$work/ds-llmc.log" 2>&1; then
    read -r big_tps big_mfu < <(summary < "$work/ds-llmc.jsonl")
    printf '%-34s %14s %8s\n' "GPT-2 124M, B=$llmc_micro T=1024, $precision" "tokens/s" "MFU %"
    printf '%-34s %14s %8s\n' "dstrain (dsworker)" "$big_tps" "$big_mfu"
    grep -m1 "tensor-core attention variants:" "$work/ds-llmc.log" || true
    grep -m1 -o "matmuls: [^;]*" "$work/ds-llmc.log" || true
    setting_row DS_GEMM_TUNING=0
    setting_row DS_CUDNN_ATTENTION=0
    [ -z "$python" ] || torch_rows "$llmc_micro" "$big_tps" "$big_mfu" sdpa
  else
    echo "dstrain at B=$llmc_micro did not run:"
    tail -n 3 "$work/ds-llmc.log"
  fi
}
# dsworker at llm.c's batch again with one setting changed (NAME=VALUE): each GEMM on cuBLASLt's
# heuristic's first algorithm (DS_GEMM_TUNING=0) rather than the fastest of its candidates, and
# the attention on dstrain's own kernels rather than cuDNN's (DS_CUDNN_ATTENTION=0): what each
# buys. UNTUNED_ROW=0 skips them.
setting_row() {
  [ "${UNTUNED_ROW:-1}" = 1 ] || return 0
  local setting=$1 name=${1%%=*}
  if env "$setting" LD_LIBRARY_PATH="${DS_LIB_PATH:+$DS_LIB_PATH:}${LD_LIBRARY_PATH:-}" \
      "$build_dir/bin/dsworker" "$work/gpt2-llmc.yaml" --metrics "$work/ds-$name.jsonl" \
      > "$work/ds-$name.log" 2>&1; then
    read -r row_tps row_mfu < <(summary < "$work/ds-$name.jsonl")
    printf '%-34s %14s %8s\n' "dstrain, $setting" "$row_tps" "$row_mfu"
  else
    echo "dstrain with $setting did not run:"
    tail -n 3 "$work/ds-$name.log"
  fi
}

if [ -z "$python" ]; then
  echo "PyTorch with CUDA not found (set PYTHON): no same-GPU comparison"
  llmc_rows
  op_profile
  gemm_table
  kernel_profile
  exit 0
fi
torch_rows "$micro" "$ds_tps" "$ds_mfu" eager sdpa
llmc_rows
op_profile
gemm_table
kernel_profile
