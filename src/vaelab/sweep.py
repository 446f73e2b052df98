"""The summary of a multirun: sweep.csv (a row per job, written when the job ends) and
rate_distortion.png (drawn when the sweep ends).

Rows are written by each job as it ends, because Hydra's basic sweeper raises on a failed job
before its end-of-sweep callback runs; `python -m vaelab.sweep <sweep dir>` rebuilds both files
from the job directories of any sweep, finished or not.
"""

import csv
import json
import logging
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from statistics import fmean, pstdev
from typing import Any

from filelock import FileLock
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vaelab.console import ON_CONSOLE
from vaelab.runs.secrets import mask_text, redact_argument

log = logging.getLogger(__name__)

SUMMARY = "sweep.csv"
PLOT = "rate_distortion.png"
SCORES_PLOT = "disentanglement.png"
SCORES = ("mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness",
          "beta_vae_score", "factor_vae_score")  # fmt: skip
_FIRST = ["job", "status", "overrides"]


def _override_columns(overrides: list[str]) -> dict[str, str]:
    return {o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[1] for o in overrides if "=" in o}


def job_row(job_dir: Path, job: int, overrides: list[str], status: str, error: str = "") -> dict:
    """One job: its overrides (also one column each), final metrics, run dir and status."""
    results_file = job_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    metrics = {k: v for k, v in results.items() if k.startswith(("val/", "test/"))}
    overrides = [redact_argument(o) for o in overrides]
    row = {"job": job, "status": status, "overrides": " ".join(overrides)}
    row.update(_override_columns(overrides), **metrics, run_dir=str(job_dir), error=error)
    return {k: mask_text(v) if isinstance(v, str) else v for k, v in row.items()}


def write_row(sweep_dir: Path, row: dict[str, Any]) -> None:
    """Add or replace the job's row in sweep.csv; jobs running in parallel take turns."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(sweep_dir / ".sweep.lock"):  # fcntl or msvcrt, as the OS has
        rows = [r for r in read_rows(sweep_dir) if str(r["job"]) != str(row["job"])]
        rows = sorted([*rows, row], key=lambda r: int(r["job"]))
        columns = list(dict.fromkeys(_FIRST + [k for r in rows for k in r]))
        tmp = sweep_dir / f".{SUMMARY}.tmp"
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, sweep_dir / SUMMARY)


def read_rows(sweep_dir: Path) -> list[dict[str, str]]:
    path = sweep_dir / SUMMARY
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def plot_rate_distortion(sweep_dir: Path, split: str = "test") -> Path | None:
    """KL (rate) against recon (distortion), one point per setting, with the spread over seeds.
    None when no finished job has the metrics."""
    from matplotlib.figure import Figure

    rows = read_rows(sweep_dir)
    # A setting is what the sweep varies, seeds aside: its points are averaged over the seeds.
    varying = _setting_keys(rows)
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        kl, recon = _float(row.get(f"{split}/kl")), _float(row.get(f"{split}/recon"))
        if row["status"] != "COMPLETED" or kl is None or recon is None:
            continue
        groups[" ".join(f"{k}={row.get(k)}" for k in varying) or "all"].append((kl, recon))
    if not groups:
        return None
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes = figure.subplots()
    for setting, points in sorted(groups.items()):
        kl, recon = zip(*points, strict=True)
        x, y = fmean(kl), fmean(recon)
        axes.errorbar(x, y, xerr=pstdev(kl), yerr=pstdev(recon), fmt="o", capsize=3)
        axes.annotate(f"{setting} (n={len(points)})", (x, y), fontsize=7)
    axes.set(
        xlabel=f"rate: {split}/kl (nats)",
        ylabel=f"distortion: {split}/recon (nats)",
        title="rate-distortion (mean ± std over seeds)",
    )
    path = sweep_dir / PLOT
    figure.savefig(path, dpi=120)
    return path


def _setting_keys(rows: list[dict[str, str]]) -> list[str]:
    """What the sweep varies, seeds aside."""
    keys = {k for r in rows for k in _override_columns(r["overrides"].split())} - {"seed"}
    return sorted(k for k in keys if len({r.get(k) for r in rows}) > 1)


def plot_disentanglement(sweep_dir: Path, split: str = "test") -> Path | None:
    """disentanglement.png (`disentanglement_figure`); None when no finished job has a score
    (data without known factors)."""
    rows = [r for r in read_rows(sweep_dir) if r["status"] == "COMPLETED"]
    figure = disentanglement_figure(rows, split)
    if figure is None:
        return None
    path = sweep_dir / SCORES_PLOT
    figure.savefig(path, dpi=110)
    return path


def disentanglement_figure(rows: list[dict[str, str]], split: str = "test"):
    """A panel per disentanglement score, at most 4 a row: the score (y, 0 to 1) of each job
    against the swept setting (x, named by the keys the sweep varies), a colour per seed named
    in one legend; None when no row has a score."""
    from matplotlib.figure import Figure

    scores = [s for s in SCORES if any(_float(r.get(f"{split}/{s}")) is not None for r in rows)]
    if not scores:
        return None
    keys = _setting_keys(rows)
    setting = {id(r): " ".join(str(r.get(k)) for k in keys) or "all" for r in rows}
    settings = list(dict.fromkeys(setting[id(r)] for r in rows))  # in the sweep's order
    seeds = sorted({r.get("seed", "") for r in rows}, key=lambda v: (len(v), v))
    cols = min(4, len(scores))
    nrows = -(-len(scores) // cols)
    figure = Figure(figsize=(3.2 * cols, 2.9 * nrows + 0.4), layout="constrained")
    panels = figure.subplots(nrows, cols, squeeze=False).ravel()
    colours = {seed: f"C{i % 10}" for i, seed in enumerate(seeds)}
    for axes, score in zip(panels, scores, strict=False):
        for row in rows:
            value = _float(row.get(f"{split}/{score}"))
            if value is not None:
                seed = row.get("seed", "")
                axes.plot(settings.index(setting[id(row)]), value, "o", alpha=0.8,
                          color=colours[seed], label=f"seed {seed}" if seed else "job")  # fmt: skip
        axes.set_xticks(range(len(settings)), settings, rotation=20, fontsize=7)
        axes.set(title=score, ylim=(-0.02, 1.02), xlabel=", ".join(keys) or "setting",
                 ylabel=f"{split}/{score}")  # fmt: skip
        axes.grid(axis="y", alpha=0.3)
    for axes in panels[len(scores) :]:
        axes.set_visible(False)
    handles = {h.get_label(): h for a in panels for h in a.get_lines()}  # one entry a seed
    figure.legend(handles.values(), handles.keys(), loc="outside lower center",
                  ncols=min(len(handles), 8), fontsize=8)  # fmt: skip
    figure.suptitle(f"disentanglement scores, {split} split: a point per job")
    return figure


class SweepSummary(Callback):
    """Hydra callback (hydra.callbacks in conf/hydra/default.yaml); acts in multiruns only."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra = HydraConfig.get()
        if hydra.mode != RunMode.MULTIRUN:
            return
        failed = job_return.status != JobStatus.COMPLETED
        error = str(job_return._return_value).splitlines()[0] if failed else ""
        row = job_row(
            Path(hydra.runtime.output_dir),
            hydra.job.num,
            list(job_return.overrides or []),
            job_return.status.name,
            error,
        )
        write_row(Path(hydra.sweep.dir), row)
        log.info(_job_line(row, config.get("optimized_metric")), extra=ON_CONSOLE)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        written = [SUMMARY, *(p.name for p in (plot_rate_distortion(sweep_dir),
                                              plot_disentanglement(sweep_dir)) if p)]  # fmt: skip
        log.info(f"Sweep summary: {', '.join(written)} in {sweep_dir}", extra=ON_CONSOLE)


def _job_line(row: dict[str, Any], metric: str | None) -> str:
    """`#3 COMPLETED · val/elbo -27.41 · logs/.../3`, or `#3 FAILED: <its error>`."""
    if row["status"] != "COMPLETED":
        return f"#{row['job']} {row['status']}: {row.get('error') or 'see its train.log'}"
    value = _float(row.get(metric)) if metric else None
    shown = f" · {metric} {value:.4g}" if value is not None else ""
    return f"#{row['job']} COMPLETED{shown} · {row['run_dir']}"


def summarize(sweep_dir: Path) -> None:
    """Rebuild sweep.csv and the plot from the job directories of a sweep."""
    for job_dir in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()):
        overrides = OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")
        num = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.job.num
        done = (job_dir / "results.json").is_file()
        status = "COMPLETED" if done else "UNFINISHED"
        write_row(sweep_dir, job_row(job_dir, num, list(overrides), status))
    plot_rate_distortion(sweep_dir)
    plot_disentanglement(sweep_dir)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python -m vaelab.sweep SWEEP_DIR")
    summarize(Path(sys.argv[1]))
    print(f"wrote {Path(sys.argv[1]) / SUMMARY} and {Path(sys.argv[1]) / PLOT}")
