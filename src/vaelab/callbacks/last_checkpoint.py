"""checkpoints/last.ckpt: where `resume=` continues from, written every N optimizer steps, after
every validation and at the fit's last step.

Lightning's ModelCheckpoint writes last.ckpt only beside a checkpoint it writes anyway: a monitored
one only when its value improved, so a run whose last epochs did not improve would end with a
last.ckpt from before them. A checkpoint written on a batch that a validation follows is resumed
past that validation (Lightning 2.6 restores the loop as having run it), so a run killed while
validating would never log that validation: the step interval's save waits for it instead. And
none is written at an epoch's end (Lightning's default for a monitored checkpoint, which
model_checkpoint turns off): Lightning 2.6 resumes such a checkpoint with trainer.max_steps set
one epoch ahead in its count, shuffling the next epoch as the one after and stopping an epoch early.
"""

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from vaelab import lightning_boundary


def _last_step(trainer: L.Trainer) -> bool:
    """Whether the batch that just ended is the fit's last (max_steps or max_epochs)."""
    last_epoch = trainer.current_epoch + 1 == trainer.max_epochs
    return trainer.global_step == trainer.max_steps or (last_epoch and trainer.is_last_batch)


class LastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint for last.ckpt alone (`save_last=True, save_top_k=0`, no monitor). Placed
    after the monitored checkpoint, whose decision on a validation it then holds."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        last = _last_step(trainer)
        every, step = lightning_boundary.checkpoint_every_n_steps(self), trainer.global_step
        if not (
            last or (every and step % every == 0) or lightning_boundary.checkpoints_by_time(self)
        ):
            return  # nothing due: most steps end here, without asking Lightning's loop
        if lightning_boundary.validation_follows(trainer):  # the save waits for it
            return  # saved after it
        if last:
            self._save_last(trainer)
        else:
            super().on_train_batch_end(trainer, *args)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # see the module's docstring

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_last(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Saved already where the fit ended, unless it was stopped inside an epoch (max_time,
        # say), whose loader has moved on to the next epoch by now: resumed from here, the rest of
        # the epoch would be shuffled as the next one's. last.ckpt stays the one before, from
        # which a resume takes the same steps again.
        pass

    def _save_last(self, trainer: L.Trainer) -> None:
        lightning_boundary.save_last(self, trainer)
