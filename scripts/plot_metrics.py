#!/usr/bin/python3
"""Plot a dsworker metrics file: loss and val loss, learning rate, tokens/s over steps.

    scripts/plot_metrics.py runs/tiny/metrics.jsonl -o runs/tiny/metrics.png [--title T]

Reads the JSON lines dsworker writes (log.metrics or --metrics): records with "loss"
are training prints, records with "val_loss" evaluations; others (memory, finish) are
skipped. Needs matplotlib from Debian (apt-get install python3-matplotlib); run it
with /usr/bin/python3.
"""
import argparse
import json
import sys


def read(path):
    steps, loss, lr, tps, mfu = [], [], [], [], []
    val_steps, val = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"plot_metrics.py: {path}:{number}: not JSON: {e}")
            if "event" in r:
                continue
            if "val_loss" in r:
                val_steps.append(r["step"])
                val.append(r["val_loss"])
            elif "loss" in r:
                steps.append(r["step"])
                loss.append(r["loss"])
                lr.append(r.get("lr"))
                tps.append(r.get("tokens_per_s"))
                mfu.append(r.get("mfu"))
    return steps, loss, lr, tps, mfu, val_steps, val


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", help="metrics file (JSON lines) written by dsworker")
    parser.add_argument("-o", "--output", default=None,
                        help="PNG to write (default: the metrics path with .png)")
    parser.add_argument("--title", default=None, help="figure title (default: the file name)")
    args = parser.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_metrics.py: matplotlib is missing; install it with "
                 "`apt-get install python3-matplotlib` and run with /usr/bin/python3")

    steps, loss, lr, tps, mfu, val_steps, val = read(args.metrics)
    if not steps and not val_steps:
        sys.exit(f"plot_metrics.py: {args.metrics} holds no training or evaluation records")
    output = args.output or (args.metrics.rsplit(".", 1)[0] + ".png")

    fig, (ax_loss, ax_lr, ax_tps) = plt.subplots(3, 1, figsize=(9, 9), sharex=True,
                                                 gridspec_kw={"height_ratios": [2, 1, 1]})
    fig.suptitle(args.title or args.metrics)
    ax_loss.plot(steps, loss, label="train loss", color="tab:blue")
    if val_steps:
        ax_loss.plot(val_steps, val, "o-", label="val loss", color="tab:orange")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()

    pairs = [(s, v) for s, v in zip(steps, lr) if v is not None]
    ax_lr.plot([s for s, _ in pairs], [v for _, v in pairs], color="tab:green")
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax_lr.grid(alpha=0.3)

    pairs = [(s, v) for s, v in zip(steps, tps) if v is not None]
    ax_tps.plot([s for s, _ in pairs], [v for _, v in pairs], color="tab:red")
    ax_tps.set_ylabel("tokens/s")
    ax_tps.set_xlabel("step")
    ax_tps.grid(alpha=0.3)
    pairs = [(s, v) for s, v in zip(steps, mfu) if v is not None]
    if pairs:  # MFU on a second axis: the same curve in units of the hardware's peak
        ax_mfu = ax_tps.twinx()
        ax_mfu.plot([s for s, _ in pairs], [100 * v for _, v in pairs], alpha=0)
        ax_mfu.set_ylabel("MFU (%)")

    fig.tight_layout()
    fig.savefig(output, dpi=100)
    print(f"plot_metrics.py: wrote {output}")


if __name__ == "__main__":
    main()
