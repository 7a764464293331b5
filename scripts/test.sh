#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test that can run here:
# unit, integration, ssh, golden, and cuda (the cuda tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}

scripts/setup-deps.sh
scripts/build.sh

# The golden fixtures are committed; with PyTorch present, check that they still
# match what PyTorch computes today.
if [ -f scripts/make_golden.py ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "test: regenerating golden fixtures with PyTorch and comparing"
  /usr/bin/python3 scripts/make_golden.py --check test/golden
fi

ctest --test-dir "$build_dir" --output-on-failure --timeout 1500 -j "$(nproc)"
