#!/usr/bin/env bash
# Prints the test binaries of a build's cuda-labelled tests, one per line (each runs all of
# its cases at once): what scripts/gpu-check.sh runs and scripts/gpu-bundle.sh packs.
#
#   scripts/cuda-tests.sh BUILD_DIR
set -euo pipefail
ctest --test-dir "$1" -N -L cuda --show-only=json-v1 |
  python3 -c 'import json, sys; print("\n".join(sorted({t["command"][0] for t in json.load(sys.stdin)["tests"]})))'
