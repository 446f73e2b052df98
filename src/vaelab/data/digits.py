"""scikit-learn's bundled handwritten digits: 1,797 grey 8x8 images, no download needed."""

import torch
from sklearn.datasets import load_digits

from vaelab.data.in_memory import Arrays, InMemoryDataModule


class DigitsDataModule(InMemoryDataModule):
    """x: (1, 8, 8) float32 in [0, 1] (the raw values are counts 0..16); y: the digit."""

    def read(self) -> dict[str, Arrays]:
        digits = load_digits()
        x = torch.as_tensor(digits.images, dtype=torch.float32).div_(16).unsqueeze(1)
        return {"train": (x, torch.as_tensor(digits.target, dtype=torch.int64))}
