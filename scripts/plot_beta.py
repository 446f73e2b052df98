"""The KL weight a run used, against the optimizer step: train/beta from its metrics.csv.

python scripts/plot_beta.py logs/train/runs/<run> docs/cyclical_beta.png
"""

import csv
import sys
from pathlib import Path

from matplotlib.figure import Figure


def main(run_dir: Path, out: Path) -> None:
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = [r for r in csv.DictReader(file) if r.get("train/beta")]
    steps = [int(r["step"]) for r in rows]
    beta = [float(r["train/beta"]) for r in rows]
    figure = Figure(figsize=(6, 2.6), layout="constrained")
    axes = figure.subplots()
    axes.plot(steps, beta, marker=".", linewidth=1)
    axes.set(xlabel="optimizer step", ylabel="train/beta", title=f"beta in {run_dir.name}")
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/plot_beta.py RUN_DIR OUT.png")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
