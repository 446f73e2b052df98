"""Lightning's LearningRateMonitor, logging each epoch's learning rate once."""

from lightning.pytorch.callbacks import LearningRateMonitor as LightningLearningRateMonitor


class LearningRateMonitor(LightningLearningRateMonitor):
    """Each epoch's rate logged once, at its first batch: a run resumed mid-epoch does not log
    it a second time at the resume's step, nor misses it where the resume starts an epoch."""

    @property
    def acts_once_per_call(self) -> bool:
        """Whether it is right once per K training batches (trainer.steps_per_call): once per
        epoch it is; per step it would log every K-th step only."""
        return self.logging_interval == "epoch"

    def on_train_epoch_start(self, trainer, *args, **kwargs) -> None:
        pass  # at the epoch's first batch instead

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx, *args) -> None:
        # At the same step as the epoch's start; Lightning 2.6 resumes a checkpoint written on
        # an epoch's last batch without calling on_train_epoch_start for the next epoch.
        if batch_idx == 0:
            super().on_train_epoch_start(trainer, pl_module)
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx, *args)
