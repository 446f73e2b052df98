"""Lightning's TensorBoardLogger, rewound by a resume: TensorBoard drops the events of the steps
that the resumed run logs again (SummaryWriter's purge_step)."""

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger


class TensorBoardLogger(LightningTensorBoardLogger):
    def rewind(self, step: int) -> None:
        """Before the first event is written: events of steps >= `step` are superseded."""
        self._kwargs["purge_step"] = step
