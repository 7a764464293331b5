#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build with CUDA, run the cuda tests and the
# GPU benchmark, and print the numbers for an issue note.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build-cuda}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
BUILD_DIR=$build_dir DS_CUDA=ON scripts/build.sh
ctest --test-dir "$build_dir" -L cuda --output-on-failure
if [ -x "$build_dir/bin/dsbench" ]; then
  "$build_dir/bin/dsbench" gpu || true
fi
