#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the CUDA checks of issue 10, summarised for an issue note.
#  1. every cuda-labelled test: each op against the CPU kernels (fp32, bf16/f16, cuBLASLt), the
#     golden PyTorch fixtures on the GPU, the ZeRO engine and dsworker on the GPU against the
#     CPU, two ranks sharing the GPU, NCCL collectives;
#  2. each op's parity error (max|gpu-cpu| / max|cpu| against its threshold);
#  3. the GPU benchmark: GPT-2 124M, bf16, tokens/s and MFU against PyTorch on the same GPU.
# Exits non-zero when a test fails, and also when no GPU was seen: the cuda tests pass by
# skipping without one, which must not read as a verification.
#
# Two ways to get the programs: built here (BUILD_DIR, default build-cuda: needs the project's
# Debian packages, scripts/setup-deps.sh), or, when .gpu-bundle.tar.xz is present (made by
# scripts/gpu-bundle.sh on a machine that has them, and carried over), unpacked from it.
#
# Time: the whole check keeps within GPU_CHECK_BUDGET seconds (default 540, under the device
# tool's 10 minutes a command): each test binary gets at most TEST_TIMEOUT (default 120) and
# whatever leaves BENCH_TIMEOUT (default 240) for the benchmark. With $OUT set (the device
# tool's folder that comes back), the summary and each test's whole output are written there as
# they happen, so a run cut short still reports what it did.
#
# A partial check, to spend less device time on what changed: GPU_CHECK_TESTS names the test
# binaries to run (space-separated, default all), GPU_CHECK_BENCH=0 leaves out the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
budget_end=$((SECONDS + ${GPU_CHECK_BUDGET:-540}))
bench_limit=${BENCH_TIMEOUT:-240}
tee_pid=""
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  exec > >(tee -a "$OUT/gpu-check.txt") 2>&1
  tee_pid=$!
fi
report=""
finish() {  # on exit: the temporary report goes, and tee gets to write the last lines
  [ -n "$report" ] && rm -f "$report" "$report.one"
  if [ -n "$tee_pid" ]; then
    exec 1>&- 2>&-
    wait "$tee_pid" 2> /dev/null || true
  fi
}
trap finish EXIT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
# The first file named $1 where CUDA, the system or PyTorch may keep it ("" if none).
find_library() {
  find /usr/local/cuda*/ /usr/lib /opt / -name "$1" -print -quit 2> /dev/null || true
}
bundle=${BUNDLE:-.gpu-bundle.tar.xz}
lib_path=""

if [ -f "$bundle" ]; then
  # Unpacked as a build folder; the tests find it and this checkout through DS_TEST_*_DIR.
  build_dir=$(mktemp -d)
  tar -C "$build_dir" -xJf "$bundle"
  export DS_TEST_BINARY_DIR=$build_dir DS_TEST_SOURCE_DIR=$PWD
  lib_path=$build_dir/lib
  # A bundle of other code would test what no longer exists: every file it was built from must be
  # here as it was (ALLOW_STALE_BUNDLE=1 overrides).
  built_from=$(head -n 1 "$build_dir/commit.txt" 2> /dev/null || echo unknown)
  if ! changed=$(sha256sum --quiet -c "$build_dir/sources.sha256" 2>&1) &&
      [ "${ALLOW_STALE_BUNDLE:-0}" != 1 ]; then
    echo "stale bundle: built from $built_from, and these files differ here" \
      "(run scripts/gpu-bundle.sh again):" >&2
    echo "$changed" | head -n 10 >&2
    exit 1
  fi
  echo "bundle built from $built_from $(sed -n 2p "$build_dir/commit.txt")"
  # CUDA libraries the bundle left to this machine: where its CUDA or PyTorch keeps them.
  for missing in $(LD_LIBRARY_PATH=$lib_path ldd "$build_dir"/bin/dsworker "$build_dir"/test/* |
                   awk '/not found/ { print $1 }' | sort -u); do
    found=$(find_library "$missing")
    [ -n "$found" ] && lib_path=$lib_path:$(dirname "$found")
  done
  echo "programs from $bundle (libraries: $lib_path)"
  tests=$(sed "s#^.*/#$build_dir/test/#" "$build_dir/tests.txt")
else
  build_dir=${BUILD_DIR:-build-cuda}
  BUILD_DIR=$build_dir DS_CUDA=ON scripts/build.sh
  tests=$(scripts/cuda-tests.sh "$build_dir")
fi
# cuDNN is loaded at run time (lib/tensor/cuda/cudnn_library.h), so ldd does not name it. PyTorch's
# (its wheel's nvidia/cudnn, built for its CUDA) where there is one, else the loader's, else the
# first libcudnn.so.9 found here.
cudnn_dir=$(python3 -c 'import nvidia.cudnn as c; print(list(c.__path__)[0] + "/lib")' \
            2> /dev/null || true)
if [ -n "$cudnn_dir" ] && [ -f "$cudnn_dir/libcudnn.so.9" ]; then
  export DS_CUDNN_LIBRARY=$cudnn_dir/libcudnn.so.9
  lib_path=${lib_path:+$lib_path:}$cudnn_dir
elif ! ldconfig -p 2> /dev/null | grep -q 'libcudnn\.so\.9 '; then
  cudnn_found=$(find_library libcudnn.so.9)
  [ -n "$cudnn_found" ] && lib_path=${lib_path:+$lib_path:}$(dirname "$cudnn_found")
fi
echo "cuDNN for the fused attention:" \
  "${DS_CUDNN_LIBRARY:-${cudnn_found:-libcudnn.so.9 from the loader path, if any}}"
# Each test binary and the benchmark get a time limit, so one hang cannot eat the device time.
test_limit=${TEST_TIMEOUT:-120}
run_limited() {  # seconds command...
  local limit=$1
  shift
  timeout -k 10 "$limit" env LD_LIBRARY_PATH="${lib_path:+$lib_path:}${LD_LIBRARY_PATH:-}" "$@"
}

status=0
report=$(mktemp)
echo
echo "== cuda tests =="
[ "${GPU_CHECK_BENCH:-1}" = 0 ] && bench_limit=0
for t in $tests; do
  if [ -n "${GPU_CHECK_TESTS:-}" ] && ! [[ " $GPU_CHECK_TESTS " == *" $(basename "$t") "* ]]; then
    continue
  fi
  limit=$((budget_end - bench_limit - SECONDS))
  [ "$limit" -gt "$test_limit" ] && limit=$test_limit
  if [ "$limit" -lt 20 ]; then
    echo "SKIP  $(basename "$t") (out of time: GPU_CHECK_BUDGET)"
    status=1
    continue
  fi
  code=0
  started=$SECONDS
  (cd "$build_dir/test" && DS_PARITY_REPORT=1 run_limited "$limit" "$t" -r compact) \
    > "$report.one" 2>&1 || code=$?
  [ -n "${OUT:-}" ] && cp "$report.one" "$OUT/$(basename "$t").log"
  if [ "$code" -eq 0 ]; then
    echo "ok    $(basename "$t"): $(grep -E '^(Passed|All tests)' "$report.one" | tail -n 1)" \
      "($((SECONDS - started)) s)"
  else
    [ "$code" -eq 124 ] && echo "FAIL  $(basename "$t") (timed out after ${limit}s)" ||
      echo "FAIL  $(basename "$t") (exit $code)"
    grep -v '^parity ' "$report.one" | tail -n 40
    status=1
  fi
  cat "$report.one" >> "$report"
done
rm -f "$report.one"

echo
echo "== CUDA op parity (max|gpu-cpu| / max|cpu|, threshold, verdict) =="
if grep -q "no CUDA device" "$report"; then
  grep -m1 "no CUDA device" "$report" || true
  echo "SKIPPED: the tests saw no CUDA device, so nothing was verified on a GPU"
  status=1
else
  grep '^parity ' "$report" | sed 's/^parity //' || true
  echo "$(grep -c '^parity .* ok$' "$report" || true) checks ok," \
    "$(grep -c '^parity .* FAIL$' "$report" || true) over threshold"
fi

echo
echo "== GPU benchmark =="
bench_status=0
remaining=$((budget_end - SECONDS))
[ "$remaining" -lt "$bench_limit" ] && bench_limit=$remaining
if [ "${GPU_CHECK_BENCH:-1}" = 0 ]; then
  echo "not run (GPU_CHECK_BENCH=0)"
elif [ "$bench_limit" -lt 30 ]; then
  echo "SKIP  the benchmark (out of time: GPU_CHECK_BUDGET)"
  bench_status=1
else
  BUILD_DIR=$build_dir DS_LIB_PATH=$lib_path timeout -k 10 "$bench_limit" \
    bench/gpu_bench.sh || bench_status=$?
fi
[ "$bench_status" -eq 0 ] || { echo "benchmark exit code $bench_status"; status=1; }
exit "$status"
