"""A warning, while training, when the VAE's posterior has collapsed onto the prior."""

import logging

import lightning as L

log = logging.getLogger(__name__)


class CollapseMonitor(L.Callback):
    """One warning line when fewer than `min_active_share` of the latent dimensions have been
    active (val/active_units) at `patience` validations in a row, counted only once the KL
    schedule has reached its target (`warmup_end()`): early in training, and during a warm-up,
    few active dimensions are normal. It warns once per run."""

    def __init__(self, min_active_share: float = 0.5, patience: int = 10):
        self.min_active_share, self.patience = min_active_share, patience
        self._streak, self._warned = 0, False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        active = trainer.callback_metrics.get("val/active_units")
        if trainer.sanity_checking or active is None or self._warned:
            return
        warmed_up = trainer.global_step >= pl_module.warmup_end()
        total = pl_module.latent_dim
        collapsed = warmed_up and int(active) < self.min_active_share * total
        self._streak = self._streak + 1 if collapsed else 0
        if self._streak >= self.patience and trainer.is_global_zero:
            self._warned = True
            log.warning(
                f"posterior collapse: at the last {self.patience} validations (to epoch "
                f"{trainer.current_epoch}) only {int(active)} of {total} latent dimensions were "
                f"active, so z carries almost nothing about x; try a smaller model.beta, "
                f"model/kl_schedule=linear or cyclical, or model.free_bits=0.5"
            )
