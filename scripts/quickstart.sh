#!/usr/bin/env bash
# From a fresh Debian machine: install what is needed, build, and run the default
# example (configs/tiny.yaml, a ~1M-parameter byte-level GPT on the fortunes corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}

scripts/setup-deps.sh
scripts/build.sh

echo "quickstart: the default config, fully resolved:"
"$build_dir/bin/dsworker" validate configs/tiny.yaml
