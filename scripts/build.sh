#!/usr/bin/env bash
# Configures and builds dstrain into ${BUILD_DIR:-build}. DS_CUDA=AUTO|ON|OFF
# (default AUTO: on when /usr/local/cuda has nvcc and NCCL).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
  -DDS_CUDA="${DS_CUDA:-AUTO}" "$@"
cmake --build "$build_dir" -j "$(nproc)"
