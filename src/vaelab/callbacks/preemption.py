"""last.ckpt where a fit stopped on SIGTERM (see vaelab.runs.preemption)."""

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException


class CheckpointOnSigterm(L.Callback):
    """Writes last.ckpt where a fit stopped on SIGTERM, so that `resume=` continues from there."""

    def __init__(self):
        self.saved: str | None = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        checkpoint = trainer.checkpoint_callback
        if (
            not isinstance(exception, SIGTERMException)
            or trainer.state.fn != "fit"
            # Lightning does not run a validation again that a checkpoint interrupted: stopped
            # there, the run resumes from its previous checkpoint instead, and validates.
            or trainer.sanity_checking
            or trainer.validating
            or not isinstance(checkpoint, ModelCheckpoint)
            or checkpoint.dirpath is None
        ):
            return
        path = Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}.ckpt"
        trainer.save_checkpoint(path)
        self.saved = str(path)
