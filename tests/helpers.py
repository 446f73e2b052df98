"""Callbacks that tests inject through the config, to run in the real training subprocess."""

import os
import signal
import signal as signal_module

import lightning as L
import torch


class KillAt(L.Callback):
    """SIGKILL this process right after the optimizer step that reaches `step`: a pre-emption
    or `kill -9` at a known point, with no chance to clean up. With several steps per call
    (trainer.steps_per_call), after the call that reaches it."""

    acts_once_per_call = True

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordBatches(L.Callback):
    """Writes every training example this rank saw, as rows of x, to <folder>/rank<N>.pt."""

    def __init__(self, folder: str):
        self.folder, self.rows = folder, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rows.append(batch[0].flatten(1).cpu())

    def on_train_end(self, trainer, pl_module):
        os.makedirs(self.folder, exist_ok=True)
        torch.save(torch.cat(self.rows), os.path.join(self.folder, f"rank{trainer.global_rank}.pt"))


class PoisonWeights(L.Callback):
    """Sets the first weight tensor to NaN after the optimizer step that reaches `step`: what an
    exploding update does, at a known point."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class SignalAt(L.Callback):
    """Sends this process `signal` (a name: SIGTERM, SIGINT) in the given stage: after the
    optimizer step that reaches `step` in training, or at the first batch of validation or
    testing once that step is reached: what a scheduler's pre-emption does, at a known point."""

    acts_once_per_call = True

    def __init__(self, step: int, stage: str = "train", signal: str = "SIGTERM"):
        self.step, self.stage, self.signal = step, stage, getattr(signal_module, signal)
        self.sent = False

    def _maybe(self, trainer, stage: str) -> None:
        if stage == self.stage and trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signal)

    def on_train_batch_end(self, trainer, *args):
        self._maybe(trainer, "train")

    def on_validation_batch_start(self, trainer, *args):
        if not trainer.sanity_checking:
            self._maybe(trainer, "val")

    def on_test_batch_start(self, trainer, *args):
        self._maybe(trainer, "test")
