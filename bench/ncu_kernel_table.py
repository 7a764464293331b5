#!/usr/bin/env python3
"""Nsight Compute's CSV (ncu --csv) on stdin -> a table per kernel, for bench/gpu_bench.sh.

With --per-step N: each kernel's total GPU time (gpu__time_duration.sum) divided by the N steps
the profiled run took, the most time first. Without it: every metric of every profiled launch,
one block per launch (the detail run on the attention kernels)."""
import argparse
import csv
import collections
import sys


def rows():
    lines = [line for line in sys.stdin if line.startswith('"')]  # ncu's own notes start with ==
    return list(csv.DictReader(lines))


def short(name, width=70):
    name = name.split("(")[0]  # drop the parameter list
    return name if len(name) <= width else name[: width - 3] + "..."


# ncu --print-units base gives nanoseconds; the others in case a version scales them anyway.
MS_PER_UNIT = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0,
               "msecond": 1.0, "s": 1e3, "second": 1e3}


def per_step(records, steps):
    total = collections.defaultdict(float)
    calls = collections.Counter()
    for r in records:
        if r["Metric Name"] != "gpu__time_duration.sum":
            continue
        scale = MS_PER_UNIT.get(r["Metric Unit"])
        if scale is None:
            sys.exit(f"ncu_kernel_table: unexpected time unit {r['Metric Unit']!r}")
        value = float(r["Metric Value"].replace(",", "")) * scale
        total[short(r["Kernel Name"])] += value
        calls[short(r["Kernel Name"])] += 1
    grand = sum(total.values())
    if grand <= 0:
        print("ncu timed no kernels")
        return
    print(f"GPU time per step by kernel (Nsight Compute, {steps} steps): {grand / steps:.2f} ms")
    for name, ms in sorted(total.items(), key=lambda kv: -kv[1])[:35]:
        print(f"  {name:<70} {calls[name] / steps:7.1f} calls {ms / steps:9.3f} ms "
              f"{100 * ms / grand:5.1f} %")


def detail(records):
    launches = collections.OrderedDict()
    for r in records:
        launches.setdefault((r["ID"], short(r["Kernel Name"])), []).append(
            (r["Metric Name"], r["Metric Unit"], r["Metric Value"]))
    for (_, name), metrics in launches.items():
        print(f"  {name}")
        for metric, unit, value in metrics:
            print(f"    {metric:<72} {value:>14} {unit}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-step", type=int, default=0)
    args = parser.parse_args()
    records = rows()
    if not records:
        print("ncu wrote no records")
        return 1
    if args.per_step:
        per_step(records, args.per_step)
    else:
        detail(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
