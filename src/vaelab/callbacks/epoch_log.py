"""One log line per epoch, in place of a progress bar: for CI logs, SLURM output files and
anything else that is not a terminal."""

import logging
import math
import time

from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


class EpochLog(Callback):
    """`epoch 3/20 · step 36 · train/loss 27.31 · val/loss 26.90 · val/elbo -26.90 · 1.2 s`:
    the training loss, the validation loss and the checkpoint monitor of each epoch; and while
    testing (test/nll_iw's importance samples can take minutes), `test 40/80 batches · 30 s`
    every `every_s` seconds."""

    def __init__(self, monitor: str | None = None, every_s: float = 15.0):
        self.monitor, self.every_s = monitor, every_s
        self._started = 0.0
        self._ended: tuple[int, float] | None = None
        self._testing_since = self._said = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        # A resume that starts mid-epoch does not call on_train_epoch_start for that epoch.
        self._started = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._say(trainer)
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # The model logs its epoch means in its own hook, which runs after this one: said
        # when the next epoch starts or training ends.
        self._ended = (trainer.current_epoch, time.perf_counter() - self._started)

    def on_train_end(self, trainer, pl_module) -> None:
        self._say(trainer)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._testing_since = self._said = time.perf_counter()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        now = time.perf_counter()
        if now - self._said < self.every_s or not trainer.is_global_zero:
            return
        self._said = now
        total = trainer.num_test_batches[dataloader_idx]
        log.info(f"test {batch_idx + 1}/{total} batches · {now - self._testing_since:.0f} s")

    def _say(self, trainer) -> None:
        if self._ended is None or not trainer.is_global_zero:
            return
        (epoch, seconds), self._ended = self._ended, None
        names = dict.fromkeys(["train/loss", "val/loss", self.monitor])  # ordered, no repeats
        metrics = trainer.callback_metrics
        values = [f"{n} {_format(float(metrics[n]))}" for n in names if n and n in metrics]
        last = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        parts = [f"epoch {epoch + 1}/{last}", f"step {trainer.global_step}"]
        log.info(" · ".join([*parts, *values, f"{seconds:.1f} s"]))


def _format(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) and abs(value) < 1e5 else f"{value:.3e}"
