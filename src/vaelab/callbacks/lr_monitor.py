"""Lightning's LearningRateMonitor, logging each epoch's learning rate once."""

from lightning.pytorch.callbacks import LearningRateMonitor as LightningLearningRateMonitor


class LearningRateMonitor(LightningLearningRateMonitor):
    """A run resumed mid-epoch starts that epoch again; the rate logged at its real start is
    already in the logs and is not written a second time at the resume's step."""

    @property
    def acts_once_per_call(self) -> bool:
        """Whether it is right once per K training batches (trainer.steps_per_call): once per
        epoch it is; per step it would log every K-th step only."""
        return self.logging_interval == "epoch"

    def on_train_epoch_start(self, trainer, *args, **kwargs) -> None:
        # At an epoch's real start the progress still shows the last epoch, ended (or nothing).
        progress = trainer.fit_loop.epoch_loop.batch_progress
        if progress.current.completed > 0 and not progress.is_last_batch:
            return
        super().on_train_epoch_start(trainer, *args, **kwargs)
