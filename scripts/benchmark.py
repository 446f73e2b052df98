"""Training speed of vaelab against a hand-written PyTorch loop, in one process, on the same
device, data, model, loss, optimizer and batch size; pythae too when it is installed.

    python scripts/benchmark.py                      # Fashion-MNIST (Debian's folder) or digits
    python scripts/benchmark.py --device cuda --epochs 5 --out benchmark.json
    python scripts/benchmark.py --hidden 64 --latent 8 --batch-size 32   # host time dominates
    python scripts/benchmark.py --sweep --hidden 64 --latent 8 --batch-size 32 --limit 12800 \
        --epochs 4                       # a beta x seed sweep: members apart and stacked

The model is the MLP VAE of experiment=fashion_mnist: 784-512-256, z = 32, Bernoulli, Adam 1e-3
(vaelab's optimizer config, fused, in the plain loops too; pythae runs its own default Adam).
Variants:
  plain            a hand-written loop, the data on the device, batches cut there
  plain_compiled   the same loop with its loss torch.compile'd (--compile-mode)
  vaelab           vaelab-train's own path (Hydra config, Lightning Trainer, its callbacks,
                   validation every epoch) with the default config
  vaelab_k1        the same with trainer.steps_per_call=1: one optimizer step per Lightning step
  vaelab_compiled  the default config with model.compile=true
  pythae           pythae's VAE and BaseTrainer around the same networks (when installed)
Speed is training images per second over the epochs after the first (validation not counted),
counted from the optimizer steps each variant took; `ms_per_step` is the wall time of one, and
`host_ms_per_step` what a variant adds to the plain loop's step of the same compile mode (the
model's math, with nothing around it): the framework's host work per step. Each variant's test
ELBO (nats, one posterior sample per image) shows that none of them did less.
"""

import argparse
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from vaelab import compose

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
LR, SEED = 1e-3, 0


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device: str) -> float:
    """The variant's peak of allocated CUDA memory; on a CPU the process's peak RSS so far."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def data_overrides(data_dir: str | None) -> list[str]:
    """The dataset as vaelab config overrides: the given IDX folder, Debian's Fashion-MNIST, or
    the bundled digits."""
    folder = Path(data_dir) if data_dir else FASHION_MNIST
    if (folder / "train-images-idx3-ubyte.gz").is_file() or (
        folder / "train-images-idx3-ubyte"
    ).is_file():
        return ["data=fashion_mnist", f"data.data_dir={folder}"]
    if data_dir:
        sys.exit(f"error: no Fashion-MNIST IDX files in {data_dir}")
    return ["data=digits"]


def model_overrides(args) -> list[str]:
    return [
        "model=vae",
        "model/net=mlp",
        f"model.net.hidden=[{','.join(map(str, args.hidden))}]",
        f"data.latent_dim={args.latent}",
        "data.likelihood=bernoulli",
        f"model.optimizer.lr={LR}",
        f"data.batch_size={args.batch_size}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"seed={SEED}",
        "iw_samples=1",  # test/nll_iw is not what is compared; 100 samples would dominate
    ]


def load_splits(args):
    """(train x, test x) as the vaelab datamodule holds them (uint8 images or float), and the
    optimizer of vaelab's config as a function of the parameters, for the loops written here."""
    from hydra.utils import instantiate

    from vaelab.config.instantiate import build

    cfg = compose(*data_overrides(args.data_dir), *model_overrides(args), output_dir="unused")
    datamodule = build(cfg.data)
    datamodule.setup()
    optimizer = instantiate(cfg.model.optimizer)
    return datamodule.splits["train"][0], datamodule.splits["test"][0], optimizer


def batches_per_epoch(n_train: int, args) -> int:
    limit = min(args.limit or n_train, n_train)
    return max(1, limit // args.batch_size)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def make_nets(shape, args):
    from vaelab.models.nets import mlp

    torch.manual_seed(SEED)
    return mlp(tuple(shape), 2 * args.latent, args.latent, args.hidden)


def neg_elbo(encoder, decoder, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """recon + KL per example, Bernoulli likelihood, summed over dimensions."""
    mu, logvar = encoder(x).chunk(2, dim=1)
    z = mu + torch.exp(0.5 * logvar) * eps
    logits = decoder(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
    return recon + kl


@torch.no_grad()
def test_elbo(encoder, decoder, test_x: torch.Tensor, device: str, latent: int) -> float:
    """The mean ELBO over the test images, one posterior sample each (fixed noise)."""
    encoder.eval(), decoder.eval()
    generator = torch.Generator().manual_seed(0)
    total = 0.0
    for start in range(0, len(test_x), 1000):
        x = _as_float(test_x[start : start + 1000]).to(device)
        eps = torch.randn(len(x), latent, generator=generator).to(device)
        total += neg_elbo(encoder, decoder, x, eps).sum().item()
    return -total / len(test_x)


def run_plain(train_x, test_x, make_optimizer, args, compiled: bool) -> dict:
    """The hand-written loop: data on the device, a fresh permutation per epoch, batches cut by
    index there, one step of vaelab's optimizer (fused Adam) per batch, no logging."""
    device = args.device
    encoder, decoder = (net.to(device) for net in make_nets(train_x.shape[1:], args))
    optimizer = make_optimizer([*encoder.parameters(), *decoder.parameters()])

    def loss_of(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return neg_elbo(encoder, decoder, x, eps).mean()

    if compiled:
        loss_of = torch.compile(loss_of, mode=args.compile_mode, dynamic=False)
    x_all = train_x.to(device)
    n_batches = batches_per_epoch(len(x_all), args)
    b = args.batch_size
    generator = torch.Generator(device).manual_seed(SEED)
    times = []
    for _ in range(args.epochs):
        _sync(device)
        start = time.perf_counter()
        order = torch.randperm(len(x_all), device=device, generator=generator)
        for k in range(n_batches):
            x = _as_float(x_all[order[k * b : (k + 1) * b]])
            eps = torch.randn(len(x), args.latent, device=device)
            loss = loss_of(x, eps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return {
        "times": times,
        "steps": [n_batches] * args.epochs,
        "batch_size": b,
        "test_elbo": test_elbo(encoder, decoder, test_x, device, args.latent),
    }


def run_vaelab(args, compiled: bool, steps_per_call: str = "auto") -> dict:
    """vaelab's train(): the default config but for the benchmark's model, data and budget."""
    import lightning as L

    from vaelab.train import train

    class EpochTimer(L.Callback):
        """From the start of an epoch to the end of its last training batch: Lightning runs the
        epoch's validation before on_train_epoch_end, and validation is not counted. The steps
        are the optimizer steps the epoch took."""

        acts_once_per_call = True  # it reads the step count, not the batch index

        def __init__(self):
            self.times, self.steps, self.start, self.first = [], [], 0.0, 0

        def on_train_epoch_start(self, trainer, pl_module):
            _sync(args.device)
            self.start, self.first = time.perf_counter(), trainer.global_step

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step - self.first == trainer.num_training_batches:
                _sync(args.device)
                self.times.append(time.perf_counter() - self.start)
                self.steps.append(trainer.global_step - self.first)

        def on_train_end(self, trainer, pl_module):
            # What auto settled on: the loader's steps per call at the end, 1 when one by one.
            self.steps_per_call = getattr(trainer.train_dataloader, "steps_per_call", None) or 1

    overrides = [*data_overrides(args.data_dir), *model_overrides(args)]
    overrides += ["trainer.enable_model_summary=false", f"trainer.steps_per_call={steps_per_call}"]
    if args.limit:
        overrides.append(f"trainer.limit_train_batches={batches_per_epoch(10**9, args)}")
    if compiled:
        overrides += ["model.compile=true", f"model.compile_mode={args.compile_mode}"]
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose(*overrides, output_dir=run_dir)
        results, objects = train(cfg, extra_callbacks=[timer])
    return {
        "times": timer.times,
        "steps": timer.steps,
        "batch_size": args.batch_size,
        "test_elbo": results["test/elbo"],
        "steps_per_call": timer.steps_per_call,
    }


def run_pythae(train_x, test_x, args) -> dict | None:
    """pythae 0.1.x: its VAE (BCE on sigmoid outputs, the same loss) and BaseTrainer, around the
    same networks, fed the same images in [0, 1]."""
    try:
        from pythae.data.datasets import BaseDataset
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
        from pythae.trainers import BaseTrainer, BaseTrainerConfig
        from pythae.trainers.training_callbacks import TrainingCallback
    except ImportError:
        return None
    encoder_net, decoder_net = make_nets(train_x.shape[1:], args)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = encoder_net

        def forward(self, x):
            mu, logvar = self.net(x).chunk(2, dim=1)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = decoder_net

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    class EpochTimer(TrainingCallback):
        def __init__(self):
            self.times, self.start = [], 0.0

        def on_epoch_begin(self, training_config, **kwargs):
            _sync(args.device)
            self.start = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            _sync(args.device)
            self.times.append(time.perf_counter() - self.start)

    n_batches = batches_per_epoch(len(train_x), args)
    images = _as_float(train_x[torch.randperm(len(train_x))[: n_batches * args.batch_size]])
    config = VAEConfig(
        input_dim=tuple(train_x.shape[1:]), latent_dim=args.latent, reconstruction_loss="bce"
    )
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        training = BaseTrainerConfig(
            output_dir=out,
            num_epochs=args.epochs,
            learning_rate=LR,
            per_device_train_batch_size=args.batch_size,
            optimizer_cls="Adam",
            no_cuda=args.device != "cuda",
        )
        dataset = BaseDataset(images, torch.zeros(len(images)))
        BaseTrainer(model, dataset, training_config=training, callbacks=[timer]).train()
    encoder, decoder = encoder_net.to(args.device), decoder_net.to(args.device)
    return {
        "times": timer.times,
        "steps": [n_batches] * args.epochs,
        "batch_size": args.batch_size,
        "test_elbo": test_elbo(encoder, decoder, test_x, args.device, args.latent),
    }


def _per_step(run: dict) -> float:
    """Seconds per optimizer step over the steady epochs (all but the first): their median,
    which a busy machine disturbs least."""
    return statistics.median(
        t / steps for t, steps in zip(run["times"][1:], run["steps"][1:], strict=True)
    )


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per variant, from its fastest repeat (on a busy machine the ratios then compare like with
    like): images/s, ms per optimizer step, the host time it adds per step to the plain loop of
    its compile mode, and the ratios to the plain loops; with repeats, the range of its ratio to
    the plain loop of the same repeat."""
    table = {}
    for name, repeats in runs.items():
        run = min(repeats, key=_per_step)
        per_step = _per_step(run)
        table[name] = {
            "img_per_s": run["batch_size"] / per_step,
            "ms_per_step": 1000 * per_step,
            "peak_mem_mb": run["peak_mem_mb"],
            "test_elbo": run["test_elbo"],
        }
        if "steps_per_call" in run:
            table[name]["steps_per_call"] = run["steps_per_call"]
        for reference in ("plain", "plain_compiled"):
            if reference == "plain" or (name.endswith("compiled") and reference in runs):
                ratios = [_per_step(r) / _per_step(one) for one, r in zip(repeats, runs[reference])]
                table[name][f"ratio_to_{reference}_range"] = [min(ratios), max(ratios)]
    for name, row in table.items():
        compiled = "compiled" in name and "plain_compiled" in table
        reference = "plain_compiled" if compiled else "plain"
        row["host_ms_per_step"] = row["ms_per_step"] - table[reference]["ms_per_step"]
        row["ratio_to_plain"] = row["img_per_s"] / table["plain"]["img_per_s"]
        if name.endswith("compiled") and "plain_compiled" in table:
            row["ratio_to_plain_compiled"] = row["img_per_s"] / table["plain_compiled"]["img_per_s"]
    return table


def markdown(table: dict[str, dict], machine: str) -> str:
    lines = [
        f"Machine: {machine}",
        "",
        "| variant | images/s | ms/step | host ms/step | vs plain | vs plain compiled | "
        "peak MB | test ELBO |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(row: dict, reference: str) -> str:
        """Fastest runs compared, then (with repeats) the range over each repeat's pair."""
        if f"ratio_to_{reference}" not in row:
            return ""
        low, high = row[f"ratio_to_{reference}_range"]
        spread = f" ({low:.2f}–{high:.2f})" if low != high else ""
        return f"{row[f'ratio_to_{reference}']:.2f}{spread}"

    for name, row in table.items():
        lines.append(
            f"| {name} | {row['img_per_s']:,.0f} | {row['ms_per_step']:.3f} | "
            f"{row['host_ms_per_step']:+.3f} | {ratio(row, 'plain')} | "
            f"{ratio(row, 'plain_compiled')} | {row['peak_mem_mb']:,.0f} | {row['test_elbo']:.2f} |"
        )
    return "\n".join(lines)


def machine(device: str) -> str:
    import platform

    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--data-dir", help="a folder of Fashion-MNIST IDX files")
    parser.add_argument("--limit", type=int, help="training images per epoch (default: all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--hidden",
        type=lambda text: [int(units) for units in text.split(",")],
        default=[512, 256],
        help="the MLP's hidden layers, comma-separated (default: 512,256)",
    )
    parser.add_argument("--latent", type=int, default=32, help="latent dimensions (default: 32)")
    parser.add_argument(
        "--compile-mode", help="torch.compile mode (default: reduce-overhead on CUDA)"
    )
    parser.add_argument(
        "--variants", default="plain,plain_compiled,vaelab,vaelab_k1,vaelab_compiled,pythae"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the variants this many times, in turn, and keep each one's fastest run: on a "
        "busy machine the ratios then compare like with like",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="the members of a beta x seed sweep trained apart and stacked, beside the sweep "
        "through the basic launcher (scripts/sweep_benchmark.py)",
    )
    parser.add_argument("--no-basic", action="store_true", help="--sweep without the launcher")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch is warm-up and not timed")
    args.compile_mode = args.compile_mode or (
        "reduce-overhead" if args.device == "cuda" else "default"
    )
    wanted = args.variants.split(",")
    if "plain" not in wanted:
        parser.error("--variants must include plain, the reference of every ratio")

    train_x, test_x, make_optimizer = load_splits(args)
    if args.sweep:
        return sweep(train_x, test_x, args)
    variants = {
        "plain": lambda: run_plain(train_x, test_x, make_optimizer, args, compiled=False),
        "plain_compiled": lambda: run_plain(train_x, test_x, make_optimizer, args, compiled=True),
        "vaelab": lambda: run_vaelab(args, compiled=False),
        "vaelab_k1": lambda: run_vaelab(args, compiled=False, steps_per_call="1"),
        "vaelab_compiled": lambda: run_vaelab(args, compiled=True),
        "pythae": lambda: run_pythae(train_x, test_x, args),
    }
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for name in wanted:
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            run = variants[name]()
            if run is None:
                print(f"{name}: not installed, left out", file=sys.stderr)
                continue
            run["peak_mem_mb"] = _peak_mb(args.device)
            runs.setdefault(name, []).append(run)
    table = summarise(runs)
    print(markdown(table, machine(args.device)))
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=2) + "\n")
    assert all(math.isfinite(row["test_elbo"]) for row in table.values())
    return table


def sweep(train_x, test_x, args) -> dict:
    import sweep_benchmark  # beside this script

    # The sweep sets the seeds, and the launcher's test its own importance samples.
    overrides = [
        o
        for o in [*data_overrides(args.data_dir), *model_overrides(args)]
        if not o.startswith(("seed=", "iw_samples="))
    ]
    table = sweep_benchmark.run(overrides, train_x, test_x, args)
    print(sweep_benchmark.markdown(table, machine(args.device)))
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
