"""vaelab.load: the model of a trained run, of the class that trained it."""

from pathlib import Path

from vaelab.models.base import Model
from vaelab.runs.trained import checkpoint_of


def load(path: str | Path, map_location=None) -> Model:
    """The trained model of a run directory (its best checkpoint, else its last) or of a
    checkpoint file, in eval mode, of the class that wrote it (an IWAE for an IWAE's run);
    `map_location` as torch.load takes it ("cpu" for a GPU's checkpoint on a machine without
    one).

    model = vaelab.load("logs/train/runs/2026-12-07_10-00-00")
    z = model.embed(x)
    """
    return Model.load_from_checkpoint(checkpoint_of(Path(path)), map_location=map_location).eval()
