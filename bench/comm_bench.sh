#!/usr/bin/env bash
# Same-host collective bandwidth against a plain TCP stream measured in the same run (issue 4's
# speed check: allreduce busbw at 64 MiB on 2 processes >= 80% of the TCP stream).
#
#   bench/comm_bench.sh [build-dir] [runs]
#
# Prints each run's TCP stream and allreduce busbw for the shared-memory backend (the default
# on one host) and Gloo (what crosses hosts), then the ratios. Numbers vary with the machine's
# load: run it on a quiet machine and look at all runs, not the best one.
set -euo pipefail
build="${1:-build}"
runs="${2:-3}"
dsbench="$build/bin/dsbench"
[[ -x "$dsbench" ]] || { echo "comm_bench: no $dsbench; build first (cmake --build $build)" >&2; exit 2; }

for backend in shm gloo; do
  for ((i = 1; i <= runs; i++)); do
    echo "== $backend, run $i"
    "$dsbench" comm --np 2 --backend "$backend" -b 64M -e 64M -n 10 -w 3 -c 1 |
      grep -E "plain TCP stream|busbw at|wrong elements"
  done
done
