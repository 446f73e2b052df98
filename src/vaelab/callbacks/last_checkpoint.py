"""checkpoints/last.ckpt: where `resume=` continues from, written every N optimizer steps, after
every validation and at the end of fitting.

Lightning's ModelCheckpoint writes last.ckpt only beside a checkpoint it writes anyway: a monitored
one only when its value improved, so a run whose last epochs did not improve would end with a
last.ckpt from before them. And a checkpoint written on a batch that a validation follows is
resumed past that validation (Lightning 2.6 restores the loop as having run it), so a run killed
while validating would never log that validation: the step interval's save waits for it instead.
"""

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


def validation_follows(trainer: L.Trainer) -> bool:
    """Whether Lightning validates right after the training batch that just ended (its own
    decision, taken from the same state a moment later). With a validation every so many seconds
    the answer may change in that moment: the save then always waits for the next validation."""
    if getattr(trainer, "_val_check_time_interval", None) is not None:  # Lightning >= 2.6
        return trainer.enable_validation
    loop = trainer.fit_loop
    return loop.epoch_loop._should_check_val_fx(loop._data_fetcher)


class LastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint for last.ckpt alone (`save_last=True, save_top_k=0`, no monitor)."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if not validation_follows(trainer):  # else saved after it
            super().on_train_batch_end(trainer, *args)

    # After a validation where the monitored checkpoint takes its decision on it (at the
    # epoch's end, or at the validation's end for validations within epochs): last.ckpt holds
    # that decision, which a resume would otherwise take again without the metric.
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_last(trainer)

    def _save_last(self, trainer: L.Trainer) -> None:
        # Skipped in the sanity check, outside fitting, and where this step is saved already.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
