"""The model table (docs/guides/models.md): every preset trained on the same data, same budget,
then tested and probed as vaelab-eval does, in one process; a markdown table on stdout and the
numbers as JSON.

    python scripts/model_table.py                         # Fashion-MNIST, 1 epoch each
    python scripts/model_table.py --epochs 5 --out table.json
    python scripts/model_table.py --models vae iwae --data-dir /path/to/fashion-mnist
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from vaelab import compose
from vaelab.cli.errors import exit_if_user_error
from vaelab.config.presets import group_options, model_presets
from vaelab.evaluate import evaluate
from vaelab.train import train

# A row is a preset and, after it, overrides of its own: every preset of conf/model/, then the
# VAE with each prior and posterior other than the default ones.
MODELS = [
    *model_presets(),
    *(
        f"vae model/{group}={option}"
        for group, default in (("prior", "standard"), ("posterior", "gaussian"))
        for option in group_options(f"model/{group}")
        if option != default
    ),
]
COLUMNS = {
    "test/elbo": "ELBO",
    "test/recon": "recon",
    "test/nll_iw": "nll_iw",
    "test/active_units": "active units",
    "test/linear_probe_acc": "linear probe",
    "test/knn_acc": "kNN",
    "seconds": "s",
}


def measure(row: str, args, root: Path) -> dict:
    model, *overrides = row.split()
    folder = "_".join(part.replace("/", "-").replace("=", "-") for part in row.split())
    data = ["data=fashion_mnist", f"data.data_dir={args.data_dir}"]
    budget = [f"trainer.max_epochs={args.epochs}", f"seed={args.seed}", f"iw_samples={args.iw}"]
    quiet = ["callbacks.rich_progress_bar=null", "callbacks.images=null", "logger=none"]
    start = time.perf_counter()
    trained, _ = train(
        compose(
            f"model={model}",
            *overrides,
            *data,
            *budget,
            *quiet,
            "trainer=cpu",
            output_dir=root / folder,
        )  # fmt: skip
    )
    seconds = time.perf_counter() - start
    evaluated = evaluate(
        compose(
            f"ckpt_path={trained['best_ckpt']}",
            f"iw_samples={args.iw}",
            "trainer=cpu",
            config_name="eval",
            output_dir=root / f"{folder}_eval",
        )  # fmt: skip
    )
    return {k: evaluated.get(k) for k in COLUMNS if k != "seconds"} | {"seconds": seconds}


def markdown(rows: dict[str, dict]) -> str:
    lines = ["| model | " + " | ".join(COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for model, row in rows.items():
        cells = []
        for key in COLUMNS:
            value = row.get(key)
            cells.append(
                "—" if value is None else f"{value:.3f}" if "acc" in key else f"{value:.1f}"
            )
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--iw", type=int, default=100, help="importance samples of nll_iw")
    parser.add_argument("--out", type=Path, help="also write the numbers here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        try:
            rows = {model: measure(model, args, Path(root)) for model in args.models}
        except Exception as error:  # a row or a data folder of the user's: one line, as the CLI
            exit_if_user_error(error, "train")
            raise
    print(f"Fashion-MNIST, {args.epochs} epoch(s), seed {args.seed}, {platform.processor() or ''}")
    print(markdown(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
