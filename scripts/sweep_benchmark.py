"""A β × seed sweep of small models, its members trained one after another and stacked
(`vaelab.batched.Stack`), beside the whole sweep through vaelab-train's basic launcher: what
`python scripts/benchmark.py --sweep` runs (the other options as there; the issue's budget is
`--hidden 64 --latent 8 --batch-size 32 --limit 12800 --epochs 4`).

  basic     `vaelab-train -m model.beta=0.5,1,2,4 seed=1,2 ...` in a subprocess, end to end
            (process start, data, training, validation, test with iw_samples=10, files)
  batched   the same command with hydra/launcher=batched: the 8 jobs in lockstep, end to end
  apart     the 8 members' training in a plain loop, one after another: vaelab's model
            (`per_example`, `losses`), vaelab's optimizer, the data on the device
  stacked   the same 8 members in one stack, one optimizer over it
Each member of apart and stacked has its own initialisation seed, data order and noise, the
same in both; their test ELBOs (one posterior sample per image) show that the stack learned what
they learn apart (to float32's rounding, which Adam amplifies where a gradient is near zero).
"""

import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from vaelab import compose
from vaelab.batched import Stack

BETAS, SEEDS = (0.5, 1.0, 2.0, 4.0), (1, 2)
GRID = [(beta, seed) for beta in BETAS for seed in SEEDS]


def _members(overrides: list[str], shape) -> tuple[list, object]:
    """The sweep's models, each built under its own seed; and the optimizer of their config."""
    models = []
    for beta, seed in GRID:
        cfg = compose(*overrides, f"model.beta={beta}", f"seed={seed}", output_dir="unused")
        torch.manual_seed(seed)
        models.append(instantiate(cfg.model, input_shape=list(shape)))
    return models, instantiate(cfg.model.optimizer)


def _orders(n: int, epochs: int) -> list[list[torch.Tensor]]:
    """Each member's permutation of the training images for each epoch, from its own seed."""
    return [
        [torch.randperm(n, generator=g) for _ in range(epochs)]
        for g in (torch.Generator().manual_seed(seed) for _, seed in GRID)
    ]


def _noise_streams() -> list[torch.Generator]:
    """Each member's own noise, the same apart and stacked."""
    return [torch.Generator().manual_seed(1000 + seed) for _, seed in GRID]


def _noise(model, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A VAE's noise for batch x (what its `noise` draws), from the member's stream."""
    return torch.randn(len(x), model.latent_dim, generator=generator)


def _image(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def train_apart(models, make_optimizer, train_x, args) -> float:
    """Seconds to train the members one after another."""
    orders, b, steps = _orders(len(train_x), args.epochs), args.batch_size, args.steps
    start = time.perf_counter()
    for model, order, stream in zip(models, orders, _noise_streams(), strict=True):
        optimizer = make_optimizer(model.parameters())
        for epoch in range(args.epochs):
            for k in range(steps):
                x = _image(train_x[order[epoch][k * b : (k + 1) * b]])
                loss = model.losses(model.per_example(x, _noise(model, x, stream)))["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return time.perf_counter() - start


def train_stacked(models, make_optimizer, train_x, args) -> float:
    """Seconds to train the members as one stack; their weights are theirs again at the end."""
    orders, b, steps = _orders(len(train_x), args.epochs), args.batch_size, args.steps
    streams = _noise_streams()
    start = time.perf_counter()
    stack = Stack(models)
    optimizer = make_optimizer(stack.parameters())
    for epoch in range(args.epochs):
        for k in range(steps):
            x = _image(train_x[torch.stack([o[epoch][k * b : (k + 1) * b] for o in orders])])
            eps = torch.stack([_noise(m, x[i], streams[i]) for i, m in enumerate(models)])
            losses = stack.losses(stack.per_example(x, (eps,)))
            optimizer.zero_grad(set_to_none=True)
            sum(terms["loss"] for terms in losses).backward()
            optimizer.step()
    stack.unstack()
    return time.perf_counter() - start


@torch.no_grad()
def test_elbo(model, test_x: torch.Tensor) -> float:
    """The mean ELBO over the test images, one posterior sample each (the evaluation noise)."""
    model.eval()
    model.reseed_eval_noise()
    total = sum(
        model.terms(_image(test_x[i : i + 1000]))["elbo"].item() * len(test_x[i : i + 1000])
        for i in range(0, len(test_x), 1000)
    )
    return total / len(test_x)


def run_sweep(overrides: list[str], args, launcher: str) -> tuple[float, list[float]]:
    """Wall seconds of the sweep through a launcher, and its members' test ELBOs."""
    with tempfile.TemporaryDirectory() as sweep_dir:
        grid = [f"model.beta={','.join(map(str, BETAS))}", f"seed={','.join(map(str, SEEDS))}"]
        budget = [f"trainer.limit_train_batches={args.steps}", "iw_samples=10"]
        command = [sys.executable, "-m", "vaelab.train", "-m", *overrides, *budget, *grid,
                   f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        wall = time.perf_counter() - start
        rows = list(csv.DictReader((Path(sweep_dir) / "sweep.csv").open()))
    by_job = {(float(r["model.beta"]), int(r["seed"])): float(r["test/elbo"]) for r in rows}
    return wall, [by_job[beta, seed] for beta, seed in GRID]


def run(overrides: list[str], train_x, test_x, args) -> dict:
    args.steps = max(1, min(args.limit or len(train_x), len(train_x)) // args.batch_size)
    table = {}
    for launcher in () if args.no_basic else ("basic", "batched"):
        print(f"running the {launcher} launcher's sweep ...", file=sys.stderr, flush=True)
        wall, elbos = run_sweep(overrides, args, launcher)
        table[launcher] = {"seconds": wall, "covers": "the whole sweep", "test_elbos": elbos}
    for name, fit in (("apart", train_apart), ("stacked", train_stacked)):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        models, make_optimizer = _members(overrides, train_x.shape[1:])
        seconds = fit(models, make_optimizer, train_x, args)
        elbos = [test_elbo(model, test_x) for model in models]
        table[name] = {"seconds": seconds, "covers": "training", "test_elbos": elbos}
    table["stacked"]["speedup_over_apart"] = table["apart"]["seconds"] / table["stacked"]["seconds"]
    return table


def markdown(table: dict, machine: str) -> str:
    lines = [
        f"Machine: {machine}; members (beta, seed): {', '.join(f'({b:g}, {s})' for b, s in GRID)}",
        "",
        "| variant | seconds | what is timed | mean test ELBO | per member |",
        "|---|---:|---|---:|---|",
    ]
    for name, row in table.items():
        elbos = row["test_elbos"]
        lines.append(
            f"| {name} | {row['seconds']:.1f} | {row['covers']} | "
            f"{statistics.mean(elbos):.2f} | {', '.join(f'{e:.1f}' for e in elbos)} |"
        )
    lines.append(f"\nstacked training is {table['stacked']['speedup_over_apart']:.2f}x apart's")
    if "batched" in table:
        ratio = table["basic"]["seconds"] / table["batched"]["seconds"]
        lines.append(f"the batched launcher's sweep is {ratio:.2f}x the basic launcher's")
    return "\n".join(lines)
