#!/usr/bin/env bash
# From a fresh Debian machine: install what is needed, build, and train the default
# example (configs/tiny.yaml: a ~1M-parameter byte-level GPT on the fortunes corpus,
# about two minutes on 2 cores; the loss falls from ln 256 = 5.5 to below 2).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}

scripts/setup-deps.sh
scripts/build.sh

# A fresh run each time: without this the run would resume from its last checkpoint.
rm -rf runs/tiny
"$build_dir/bin/dsworker" configs/tiny.yaml --sample 300 "$@"
/usr/bin/python3 scripts/plot_metrics.py runs/tiny/metrics.jsonl -o runs/tiny/metrics.png
echo "quickstart: metrics in runs/tiny/metrics.jsonl, plotted in runs/tiny/metrics.png," \
  "weights in runs/tiny/model.safetensors"
echo "quickstart: more text: $build_dir/bin/dsworker sample --config configs/tiny.yaml" \
  "--weights runs/tiny/model.safetensors --prompt 'Q: ' -n 300"
