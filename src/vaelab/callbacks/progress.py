"""Lightning's rich progress bar, touched only when it redraws."""

from lightning.pytorch.callbacks import RichProgressBar

from vaelab.lightning_boundary import batches_done_in_epoch


class ProgressBar(RichProgressBar):
    """RichProgressBar updates its task and reads every progress-bar metric after each training
    batch, whatever its refresh_rate (~0.15 ms of host time per step here, more than the rest of
    the callbacks together); this one does so every `refresh_rate` batches and at an epoch's
    last batch, which is all the screen shows anyway. With several optimizer steps per call
    (trainer.steps_per_call) the hook is given the first batch of the call; the bar shows the
    loop's count, the last."""

    acts_once_per_call = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        done = batches_done_in_epoch(trainer)
        if done % max(self.refresh_rate, 1) < done - batch_idx or done == self.total_train_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, done - 1)
