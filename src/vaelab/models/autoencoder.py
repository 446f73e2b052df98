"""The deterministic autoencoder, and the training plumbing the VAE inherits from it."""

import math

import lightning as L
import torch
from hydra.utils import instantiate
from torch import Tensor

from vaelab.errors import TrainingDiverged
from vaelab.models.likelihoods import make_likelihood
from vaelab.models.running_means import RunningMeans
from vaelab.config.containers import to_plain
from vaelab.runs.rng import rng_states, set_rng_states


class AutoEncoder(L.LightningModule):
    """x -> h = encode(x) -> decode(h), the parameters of p(x|h); minimises recon = -log p(x|h).

    The networks, optimizer and LR scheduler arrive as configs (`_target_` dicts), not as built
    objects, and are saved as plain dicts: `load_from_checkpoint(path)` needs no other argument.
    """

    codes_per_latent = 1  # the encoder emits h itself; a VAE emits a mean and a log-variance

    def __init__(
        self,
        input_shape: list[int],
        latent_dim: int,
        net: dict,
        optimizer: dict,
        likelihood: str = "bernoulli",
        sigma: float = 0.1,
        scheduler: dict | None = None,
        monitor: str = "val/recon",
        monitor_mode: str = "min",
        compile: bool = False,
        compile_mode: str = "default",
    ):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.save_hyperparameters(
            to_plain(
                dict(
                    input_shape=input_shape,
                    latent_dim=latent_dim,
                    net=net,
                    optimizer=optimizer,
                    likelihood=likelihood,
                    sigma=sigma,
                    scheduler=scheduler,
                    monitor=monitor,
                    monitor_mode=monitor_mode,
                    compile=compile,
                    compile_mode=compile_mode,
                )
            ),
            logger=False,  # the loggers get the whole run config instead
        )
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.encoder, self.decoder = instantiate(
            self.hparams.net,
            input_shape=self.input_shape,
            code_dim=self.codes_per_latent * latent_dim,
            latent_dim=latent_dim,
        )
        self.likelihood = make_likelihood(likelihood, self.input_shape, sigma)
        self.core = self._core  # torch.compile'd while fitting, with model.compile=true
        self.train_means = RunningMeans()
        self._last_finite: dict[str, float] = {}  # training means at the last check
        self._logged_step = -1  # the step of the last window written to the loggers

    def encode(self, x: Tensor) -> Tensor:
        """(B, *shape) -> h, (B, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """(B, latent_dim) -> parameters of p(x|z), (B, *shape): logits or Gaussian means."""
        return self.decoder(z)

    def embed(self, x: Tensor) -> Tensor:
        """The representation of x that probes, exports and pictures use, (B, latent_dim): h."""
        return self.encode(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The mean of p(x|x'), deterministic: what a picture of the reconstruction shows."""
        return self.likelihood.mean(self(x))

    def _core(self, x: Tensor) -> dict[str, Tensor]:
        """The network math of one batch, per example: only tensors in and out, so that
        torch.compile sees the same graph at every step."""
        return {"recon": -self.likelihood.log_prob(x, self(x))}

    def terms(self, x: Tensor) -> dict[str, Tensor | float]:
        """The loss and what it is made of, each averaged over the batch (nats per example)."""
        recon = self.core(x)["recon"].mean()
        return {"loss": recon, "recon": recon}

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        x, _ = batch
        terms = self.terms(x)
        self._log_terms(terms, split, x.shape[0])
        return terms["loss"]

    def _log_terms(self, terms: dict[str, Tensor | float], split: str, batch_size: int) -> None:
        if split == "train":
            self._log_train(terms, batch_size)
            return
        self.log_dict(
            {f"{split}/{name}": value for name, value in terms.items()},
            on_step=False,
            on_epoch=True,
            batch_size=batch_size,
            sync_dist=True,
        )

    def _log_train(self, terms: dict[str, Tensor | float], batch_size: int) -> None:
        """Training terms are summed on the device and read every `log_every_n_steps` steps
        (their mean since the last read) and at the end of each epoch (the epoch's mean). The
        window means go straight to the loggers, at the step `self.log` would give them: a
        `self.log` call costs ~0.5 ms of host time here, more than a small model's whole step."""
        self.train_means.add(terms, batch_size)
        step = self.trainer.fit_loop.epoch_loop._batches_that_stepped  # as LearningRateMonitor
        # With accumulate_grad_batches > 1 several batches share a step: one row per step.
        if (self.global_step + 1) % self.trainer.log_every_n_steps or step == self._logged_step:
            return
        self._logged_step = step
        values = self._refuse_divergence(self.train_means.read("window"))
        metrics = {f"train/{k}": v for k, v in values.items()} | {"epoch": self.current_epoch}
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)

    def on_train_epoch_end(self) -> None:
        # For callbacks and results.json only: the loggers have the window means at this step,
        # and a second train/loss at one step would be a second meaning of the name.
        means = self.train_means.read("epoch")
        if means:
            self._refuse_divergence(means)
            self.log_dict({f"train/{k}": v for k, v in means.items()}, sync_dist=True, logger=False)

    def _refuse_divergence(self, means: dict[str, Tensor | float]) -> dict[str, float]:
        """The means as floats; stop the run when one is no longer finite: the step, the last
        finite values, the checkpoint that is still good and what to change. Checked where the
        terms are read anyway, so the check adds no wait for the device."""
        values = {name: float(value) for name, value in means.items()}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if not bad:
            self._last_finite = values
            return values
        last = ", ".join(f"train/{k}={v:.4g}" for k, v in self._last_finite.items())
        raise self._diverged(f"train/{bad[0]} is {values[bad[0]]} (last finite: {last or 'none'})")

    def _diverged(self, what: str) -> TrainingDiverged:
        callback = self.trainer.checkpoint_callback
        paths = [callback.best_model_path, callback.last_model_path] if callback else []
        good = next((p for p in paths if p), "none written yet")
        return TrainingDiverged(
            f"training diverged by step {self.global_step}: {what}; the last good checkpoint: "
            f"{good}; try a lower model.optimizer.lr, a KL warm-up (model/kl_schedule=linear), "
            f"or trainer.gradient_clip_val=1.0"
        )

    def on_fit_start(self) -> None:
        if self.hparams.get("compile"):
            self.core = torch.compile(self._core, mode=self.hparams.compile_mode, dynamic=False)

    def on_fit_end(self) -> None:
        self.core = self._core  # testing and inference run eager, on any batch size

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Never let diverged weights replace a good checkpoint (last.ckpt or the best).
        if not all(torch.isfinite(p).all() for p in self.parameters()):
            raise self._diverged("the weights are no longer finite, so no checkpoint was written")
        checkpoint["rng_states"] = rng_states()
        checkpoint["train_means"] = self.train_means.state_dict()
        # What the fit has measured so far: a resume with nothing left to train (a run stopped
        # while testing) reports these, as the uninterrupted run would have.
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        checkpoint["metrics"] = metrics | {
            f"train/{k}": v for k, v in self.train_means.peek("epoch").items()
        }
        # Every row logged before this checkpoint goes to disk before it: a resume from it
        # drops the rows after it and logs them again, so each step is logged exactly once.
        for logger in self.loggers:
            logger.save()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Only a resumed fit continues the random streams and the running means; loading
        # weights to test or to use them leaves the caller's random state alone.
        if self._trainer is None or self.trainer.state.fn != "fit":
            return
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])
        if "train_means" in checkpoint:
            self.train_means.load_state_dict(checkpoint["train_means"], self.device)

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer)(self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.monitor},
        }
