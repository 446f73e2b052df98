"""The study of docs/guides/data.md: VAE, β-VAE (β = 4), β-TCVAE and FactorVAE on the default
sprites grid, several seeds each, as one vaelab-train multirun (in this process, as the command
would run it); then the table of the scores and reconstruction (mean ± std over seeds) and the
MI matrix of the run with the highest MIG.

    python scripts/disentanglement_study.py                      # 3 seeds, 5 epochs each
    python scripts/disentanglement_study.py --epochs 20 --out study
"""

import argparse
import csv
import shutil
import sys
from pathlib import Path
from statistics import fmean, pstdev

MODELS = ["vae", "beta_vae", "beta_tcvae", "factor_vae"]
COLUMNS = ["mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness",
           "beta_vae_score", "factor_vae_score", "recon"]  # fmt: skip


def table(rows: list[dict[str, str]]) -> str:
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for column in COLUMNS:
            values = [float(r[f"test/{column}"]) for r in rows if r["model"] == model]
            digits = 1 if column == "recon" else 3
            cells.append(f"{fmean(values):.{digits}f} ± {pstdev(values):.{digits}f}")
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_ran(command: list[str]) -> bool:
    """vaelab-train's entry point with `command`, here rather than in a second interpreter (which
    would import torch and Lightning again); whether it finished."""
    from vaelab.train import main as train

    sys.argv = ["vaelab-train", *command]
    try:
        train()
    except SystemExit as exit:
        return not exit.code
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("logs/study"))
    parser.add_argument("overrides", nargs="*", help="more vaelab-train overrides")
    args = parser.parse_args()
    sweep = args.out / "sweep"
    command = [
        "-m", "data=sprites", f"model={','.join(args.models)}",
        f"seed={','.join(map(str, args.seeds))}", f"trainer.max_epochs={args.epochs}",
        "callbacks.rich_progress_bar=null", "logger=csv", f"hydra.sweep.dir={sweep}",
        *args.overrides,
    ]  # fmt: skip
    if not sweep_ran(command):
        sys.exit("the sweep failed: see its error above")
    with open(sweep / "sweep.csv", newline="") as file:
        rows = [r for r in csv.DictReader(file) if r["status"] == "COMPLETED"]
    best = max(rows, key=lambda r: float(r["test/mig"]))
    shutil.copy(Path(best["run_dir"]) / "images" / "mi_matrix.png", args.out / "mi_matrix.png")
    print(table(rows))
    print(
        f"\nhighest MIG: {best['overrides']} ({float(best['test/mig']):.3f}); its MI matrix: "
        f"{args.out / 'mi_matrix.png'}; per metric and seed: {sweep / 'disentanglement.png'}"
    )


if __name__ == "__main__":
    main()
