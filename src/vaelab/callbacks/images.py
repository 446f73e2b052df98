"""Pictures of what the model does: reconstructions of fixed validation examples and, for a VAE,
decoded prior samples, latent traversals and the KL of each latent dimension, as PNGs in the run
directory and in the image-capable loggers."""

from pathlib import Path

import lightning as L
import torch
from matplotlib.figure import Figure
from torch import Tensor

from vaelab import pictures


class ImageLogger(L.Callback):
    """Every `every_n_epochs` validation epochs, and once more when training ends.

    Samples decode the same z each time (drawn from a generator of this callback's own, seeded
    with `seed`), so the grids show the model changing rather than the noise, and making them
    never moves the training random stream.
    """

    def __init__(
        self, dirpath: str, every_n_epochs: int = 5, n: int = 64, seed: int = 0, max_dims: int = 10
    ):
        self.dirpath, self.every_n_epochs = Path(dirpath), every_n_epochs
        self.n, self.seed, self.max_dims = n, seed, max_dims
        self._examples: Tensor | None = None
        self._labels: Tensor | None = None  # theirs, for a conditional model's reconstructions

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self._examples is None and batch[0].dim() == 4:  # images only: (B, C, H, W)
            self._examples = batch[0][: self.n // 2].detach().clone()
            self._labels = batch[1][: self.n // 2].detach().clone()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._draw(trainer, pl_module, f"_epoch{trainer.current_epoch:03d}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        was_training = pl_module.training
        pl_module.eval()
        self._draw(trainer, pl_module, "")
        if trainer.is_global_zero and getattr(trainer.datamodule, "factor_names", ()):
            self._draw_mi(trainer, pl_module)
        pl_module.train(was_training)

    def _traversals(self, trainer, pl_module, x: Tensor, cols: int, suffix: str) -> None:
        """By falling KL (where the model measures it), each row labelled with its dimension
        and KL; for data with known factors every dimension, as disentanglement studies show
        them, else the `max_dims` most informative."""
        factors = getattr(trainer.datamodule, "factor_names", ())
        dims = pl_module.latent_dim if factors else self.max_dims
        kl = pl_module.last_kl_per_dim
        figure, rows = pictures.traversal_figure(pl_module, x, cols, dims, kl)
        self._save_figure(trainer, figure, f"traversals{suffix}", "traversals", rows)

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule, suffix: str) -> None:
        if self._examples is None or not trainer.is_global_zero:
            return
        x = self._examples.to(pl_module.device, pl_module.dtype)  # 64-true, bf16-true
        cols = min(8, len(x))
        y = self._labels.to(pl_module.device)
        grids = {"reconstructions": pictures.reconstructions(pl_module, x, cols, y)}
        if pl_module.has_prior:
            generator = torch.Generator().manual_seed(self.seed)
            grids["samples"] = pl_module.sample(self.n, generator=generator).float().clamp(0, 1)
            self._traversals(trainer, pl_module, x, cols, suffix)
        kl_dims = pl_module.last_kl_per_dim
        if kl_dims is not None:
            self._draw_kl(trainer, kl_dims, suffix)
        for name, images in grids.items():
            path = self.dirpath / f"{name}{suffix}.png"
            pictures.save(pictures.grid(images, cols), path)
            _publish(trainer, name, path)

    def _draw_kl(self, trainer: L.Trainer, kl_dims: Tensor, suffix: str) -> None:
        """A bar per latent dimension: its KL in nats. Bars near zero are collapsed dimensions."""
        figure = Figure(figsize=(max(4, 0.25 * len(kl_dims)), 3), layout="constrained")
        axes = figure.subplots()
        axes.bar(range(len(kl_dims)), kl_dims.numpy())
        axes.set(xlabel="latent dimension", ylabel="KL (nats)", title="val KL per dimension")
        self._save_figure(trainer, figure, f"kl_per_dim{suffix}", "kl_per_dim")

    def _draw_mi(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The mutual information between each code dimension and each factor of the validation
        split, over the factor's entropy (MIG's discretisation): one bright cell per column and
        row is a disentangled code."""
        from vaelab.embeddings import embed
        from vaelab.metrics.disentanglement import (
            discretize,
            factor_entropy,
            mutual_information,
            varying,
        )

        datamodule = trainer.datamodule
        codes, _ = embed(pl_module, datamodule.val_dataloader())
        factors = datamodule.factors["val"].numpy()
        names = [n for n, f in zip(datamodule.factor_names, factors.T) if len(set(f)) > 1]
        factors = varying(factors)
        share = mutual_information(discretize(codes), factors) / factor_entropy(factors)
        figure = Figure(
            figsize=(1.2 + 0.9 * len(names), 1 + 0.3 * len(share)), layout="constrained"
        )
        axes = figure.subplots()
        image = axes.imshow(share, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        axes.set(xticks=range(len(names)), xticklabels=names, ylabel="code dimension",
                 title="I(code; factor) / H(factor), val")  # fmt: skip
        axes.tick_params(axis="x", labelrotation=30)
        figure.colorbar(image, ax=axes)
        self._save_figure(trainer, figure, "mi_matrix", "mi_matrix")

    def _save_figure(self, trainer, figure, filename: str, name: str, rows=None) -> None:
        path = self.dirpath / f"{filename}.png"
        pictures.save_figure(figure, path, rows)
        _publish(trainer, name, path)


def _publish(trainer: L.Trainer, name: str, path: Path) -> None:
    """A picture the run wrote, to every logger that shows pictures (vaelab's loggers have
    `log_picture`)."""
    for logger in trainer.loggers:
        if hasattr(logger, "log_picture"):
            logger.log_picture(f"images/{name}", path, trainer.global_step)
