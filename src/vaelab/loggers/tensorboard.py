"""Lightning's TensorBoardLogger, rewound by a resume: TensorBoard drops the events of the steps
that the resumed run logs again (SummaryWriter's purge_step)."""

from importlib.util import find_spec
from pathlib import Path

import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from PIL import Image

from vaelab.extras import require
from vaelab.lightning_boundary import purge_tensorboard_from


class TensorBoardLogger(LightningTensorBoardLogger):
    def __init__(self, *args, **kwargs):
        if find_spec("tensorboardX") is None:  # Lightning writes with either
            require("tensorboard", "tensorboard", "logger=tensorboard")
        super().__init__(*args, **kwargs)

    def rewind(self, step: int) -> None:
        """Before the first event is written: events of steps >= `step` are superseded."""
        purge_tensorboard_from(self, step)

    def log_picture(self, name: str, path: Path, step: int) -> None:
        """A PNG the run wrote, as a TensorBoard image at `step`."""
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.experiment.add_image(name, pixels, step, dataformats="HWC")
