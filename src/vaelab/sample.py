"""vaelab-sample: samples, an interpolation between two test examples and latent traversals of
a checkpoint, as PNG grids in this command's own run directory; for a table, the samples as
samples.csv, in the units of the training file. Samples come from the model's prior, or
(sampler=gmm) from a Gaussian mixture fitted to the training embeddings, for any model.

    vaelab-sample ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt n=64
    vaelab-sample ckpt_path=<an autoencoder's checkpoint> sampler=gmm
"""

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from vaelab.cli.main import hydra_main
from vaelab.errors import ConfigError
from vaelab.runs.preemption import preemptible

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)


def _sampler(cfg: DictConfig, model, datamodule) -> Callable[..., "Tensor"]:
    """`sample(n, generator)`: means of p(x|z), z from the model's prior (sampler=prior), or from
    a Gaussian mixture of `gmm_components` fitted to the training split's embeddings
    (sampler=gmm: ex-post density estimation, Ghosh et al. 2020), which any model can do."""
    import numpy as np
    import torch
    from sklearn.mixture import GaussianMixture

    from vaelab.embeddings import embed

    label = cfg.get("label")
    if label is not None and not model.conditional:
        raise ConfigError(
            f"label={label}: the model of ckpt_path={cfg.ckpt_path} ({type(model).__name__}) "
            f"does not generate by class; leave label out, or sample a conditional model "
            f"(model=cvae)"
        )
    if label is not None and label >= model.num_classes:
        raise ConfigError(
            f"label={label}: the model knows {model.num_classes} classes, 0 to "
            f"{model.num_classes - 1}"
        )
    if cfg.sampler == "prior":
        if not model.has_prior:
            raise ConfigError(
                f"ckpt_path={cfg.ckpt_path} is an {type(model).__name__}: it has no prior to "
                f"sample; use sampler=gmm"
            )
        return partial(model.sample, label=label) if model.conditional else model.sample
    codes, _ = embed(model, datamodule.loader("train"))
    if len(codes) < cfg.gmm_components:
        raise ConfigError(
            f"gmm_components={cfg.gmm_components} needs at least as many training examples, and "
            f"there are {len(codes)}: give fewer gmm_components"
        )
    mixture = GaussianMixture(cfg.gmm_components, random_state=cfg.seed).fit(codes)
    log.info(f"Fitted a mixture of {cfg.gmm_components} Gaussians to {len(codes)} embeddings")

    @torch.no_grad()
    def sample(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        drawn, _ = mixture.sample(n)  # grouped by component: shuffled for the pictures
        drawn = drawn[np.random.default_rng(cfg.seed).permutation(n)]
        z = torch.as_tensor(drawn).to(model.device, model.dtype)
        return model.decode(z).mean

    return sample


def draw(cfg: DictConfig) -> list[Path]:
    import torch

    from vaelab import pictures
    from vaelab.console import quiet
    from vaelab.runs.targets import trusted_targets
    from vaelab.runs.trained import inference_trainer, load_trained, placed, trained_data

    quiet()
    model, run_cfg, checkpoint = load_trained(cfg.ckpt_path, trusted_targets(cfg))
    datamodule = trained_data(cfg.get("data"), run_cfg, checkpoint, "test")
    with placed(model, inference_trainer(cfg.trainer)) as model:
        sample = _sampler(cfg, model, datamodule)
        generator = torch.Generator().manual_seed(cfg.seed)
        if len(datamodule.shape) != 3:
            return [_write_table(cfg, sample, datamodule, generator)]
        x, y = next(iter(datamodule.loader("test")))[:2]
        x, y = x.to(model.device, model.dtype), y.to(model.device)
        grids = {
            "samples": (sample(cfg.n, generator=generator).float().clamp(0, 1), 8),
            "interpolation": (pictures.interpolation(model, x[:1], x[1:2], cfg.steps), cfg.steps),
        }
        # Traversals by falling KL, measured on the test batch (the conditional model's, given
        # its labels).
        kl = pictures.kl_per_dimension(model, x, y if model.conditional else None)
        traversals, rows = pictures.traversal_figure(model, x, cfg.steps, cfg.max_dims, kl)
    out = Path(cfg.paths.output_dir) / "images"
    written = []
    for name, (images, cols) in grids.items():
        pictures.save(pictures.grid(images, cols), out / f"{name}.png")
        written.append(out / f"{name}.png")
    pictures.save_figure(traversals, out / "traversals.png", rows)
    written.append(out / "traversals.png")
    log.info(f"Wrote {', '.join(p.name for p in written)} to {out}")
    _to_wandb(run_cfg, cfg.ckpt_path, Path(cfg.paths.output_dir), written)
    return written


def _write_table(cfg: DictConfig, sample, datamodule, generator) -> Path:
    """Samples of a table's model as rows of a CSV with the table's feature names."""
    import csv

    samples = datamodule.to_file_units(sample(cfg.n, generator=generator).float().cpu())
    path = Path(cfg.paths.output_dir) / "samples.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(datamodule.fitted["features"])
        writer.writerows(samples.tolist())
    log.info(f"Wrote {cfg.n} samples to {path}")
    return path


def _to_wandb(run_cfg: DictConfig, ckpt_path: str, out: Path, written: list[Path]) -> None:
    """When the training run logged to W&B, add the pictures to that W&B run."""
    wandb_cfg = run_cfg.get("logger", {}).get("wandb") if run_cfg.get("logger") else None
    id_file = Path(run_cfg.paths.output_dir) / "wandb_id"
    if not wandb_cfg or not id_file.is_file():
        return
    from vaelab.extras import require
    from vaelab.loggers import WandbLogger
    from vaelab.loggers.wandb import finish_run

    require("wandb", "wandb", "adding the pictures to the training run's W&B run")

    keep = ("project", "entity", "group", "mode")
    settings = {k: wandb_cfg[k] for k in keep if wandb_cfg.get(k) is not None}
    logger = WandbLogger(save_dir=str(out), run_id=id_file.read_text().strip(), **settings)
    for path in written:
        logger.log_image(f"sample/{path.stem}", [str(path)])
    finish_run()
    log.info(f"Logged the pictures to the W&B run {logger.version} of {ckpt_path}")


@hydra_main("sample", data_from_run=True)
def main(cfg: DictConfig) -> None:
    with preemptible(Path(cfg.paths.output_dir), resumable=False):
        draw(cfg)


if __name__ == "__main__":
    main()
