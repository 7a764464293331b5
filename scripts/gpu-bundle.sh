#!/usr/bin/env bash
# Here, on a machine without a GPU: build with CUDA and pack what scripts/gpu-check.sh needs on
# a GPU machine that lacks this project's Debian libraries (the lent GPU machines have CUDA,
# NCCL and PyTorch but not yaml-cpp, Gloo, OpenBLAS, ...). The bundle holds the programs, the
# cuda-labelled test binaries, the shared libraries they load that are neither CUDA's nor the
# C runtime's. gpu-check.sh uses it when it is there (pointing the tests at it and at the
# checkout with DS_TEST_BINARY_DIR and DS_TEST_SOURCE_DIR):
#
#   scripts/gpu-bundle.sh                      # writes .gpu-bundle.tar.xz (git-ignored)
#   (device tool) carry .gpu-bundle.tar.xz; run: bash scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
out=${OUT_FILE:-.gpu-bundle.tar.xz}
BUILD_DIR=$build_dir DS_CUDA=ON scripts/build.sh > /dev/null

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
build_abs=$(cd "$build_dir" && pwd)
mkdir -p "$stage/bin" "$stage/test" "$stage/lib"
cp "$build_abs"/bin/* "$stage/bin/"
scripts/cuda-tests.sh "$build_abs" > "$stage/tests.txt"
while read -r binary; do cp "$binary" "$stage/test/"; done < "$stage/tests.txt"
strip "$stage"/bin/* "$stage"/test/* 2> /dev/null || true

# Shared libraries: everything ldd resolves outside CUDA's folders and the C/C++ runtime.
for f in "$stage"/bin/* "$stage"/test/*; do ldd "$f"; done |
  awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
  grep -v -E '/usr/local/cuda|/(libc|libm|libdl|librt|libpthread|libresolv|libutil|libanl|libnss[^/]*|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done

# Which code it holds: gpu-check.sh refuses a bundle built from other sources than the checkout
# it runs in. The check is by content (every tracked file's sha256, as the files are now), not by
# commit: the GPU machine's copy of .git need not be the one the bundle was built from.
{
  git rev-parse HEAD
  git status --porcelain --untracked-files=no | grep -q . && echo "with uncommitted changes"
} > "$stage/commit.txt" || true
git ls-files -z | xargs -0 sha256sum > "$stage/sources.sha256"
tar -C "$stage" -cJf "$out" .
echo "$out: $(du -h "$out" | cut -f1) ($(wc -l < "$stage/tests.txt") test binaries," \
  "$(ls "$stage/lib" | wc -l) libraries)"
