"""Callbacks that tests inject through the config, to run in the real training subprocess."""

import os
import signal

import lightning as L


class KillAt(L.Callback):
    """SIGKILL this process right after the optimizer step that reaches `step`: a pre-emption
    or `kill -9` at a known point, with no chance to clean up."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
