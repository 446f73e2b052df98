"""A warning, while training, when the VAE's posterior collapses onto the prior."""

import logging

import lightning as L

log = logging.getLogger(__name__)


class CollapseMonitor(L.Callback):
    """One warning line when, after a validation, fewer than `min_active_share` of the latent
    dimensions are active (val/active_units): the others carry no information about x. It warns
    when the share falls below the line, not again at every epoch it stays there."""

    def __init__(self, min_active_share: float = 0.5):
        if not 0.0 <= min_active_share <= 1.0:
            raise ValueError(f"min_active_share must be in [0, 1], got {min_active_share}")
        self.min_active_share = min_active_share
        self._below = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        active = trainer.callback_metrics.get("val/active_units")
        if trainer.sanity_checking or active is None or not trainer.is_global_zero:
            return
        total = pl_module.latent_dim
        below = int(active) < self.min_active_share * total
        if below and not self._below:
            log.warning(
                f"epoch {trainer.current_epoch}: only {int(active)} of {total} latent dimensions "
                f"are active (posterior collapse); try model/kl_schedule=linear or cyclical, "
                f"model.free_bits, or a smaller model.beta"
            )
        self._below = below
