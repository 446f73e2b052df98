"""dSprites' factor grid drawn here, offline and deterministic (`data=sprites`): shape (square,
ellipse, heart), 6 scales in [0.5, 1], 40 orientations in [0, 2π), 32 x 32 positions in [0, 1];
a white shape on black, binary, as in dSprites (Matthey et al. 2017). The drawing is vaelab's own
(the official images are `data=dsprites`): the same factor structure, not the same pixels."""

import math

import numpy as np
from torch import Tensor

from vaelab.data.factors import FactorDataModule, grid_factors, subgrid

SIZES = {"shape": 3, "scale": 6, "orientation": 40, "position_x": 32, "position_y": 32}
SHAPES = ("square", "ellipse", "heart")
MARGIN = 0.22  # of the image, on each side: where the centre stops so a whole shape shows
RADIUS = 0.18  # of the image, the reach of a shape at scale 1


def factor_values(name: str, index: np.ndarray) -> np.ndarray:
    """The values of a factor at its indices in the full grid."""
    if name == "scale":
        return np.linspace(0.5, 1.0, 6)[index]
    if name == "orientation":
        return index * (2 * math.pi / 40)
    if name in ("position_x", "position_y"):
        return np.linspace(0.0, 1.0, 32)[index]
    return index


def render(shape, scale, orientation, x, y, size: int = 64) -> np.ndarray:
    """Images (N, size, size) bool of N sprites, each argument an array of N (a shape index, a
    scale, an angle in radians, a position in [0, 1] across and down). A pixel is on when its
    centre lies inside the shape."""
    shape, scale, orientation, x, y = (np.asarray(a, dtype=np.float64) for a in
                                       (shape, scale, orientation, x, y))  # fmt: skip
    images = np.empty((len(shape), size, size), dtype=bool)
    for kind, inside in enumerate((_square, _ellipse, _heart)):
        mine = shape == kind  # each sprite tested against its own shape only
        if mine.any():
            p, q = _frame(scale[mine], orientation[mine], x[mine], y[mine], size)
            images[mine] = inside(p, q)
    return images


def _frame(scale, orientation, x, y, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel in each sprite's own frame, turned back by its orientation, in units of its
    reach; q points up, as a picture's y does."""
    centres = (np.arange(size) + 0.5) / size
    u, v = centres[None, None, :], centres[None, :, None]  # across, down
    cx = (MARGIN + x * (1 - 2 * MARGIN))[:, None, None]
    cy = (MARGIN + y * (1 - 2 * MARGIN))[:, None, None]
    cos, sin = np.cos(orientation)[:, None, None], np.sin(orientation)[:, None, None]
    reach = (RADIUS * scale)[:, None, None]
    p = (cos * (u - cx) + sin * (v - cy)) / reach
    q = -(-sin * (u - cx) + cos * (v - cy)) / reach
    return p, q


def _square(p, q):
    return (np.abs(p) <= 0.75) & (np.abs(q) <= 0.75)


def _ellipse(p, q):
    return p**2 + (q / 0.5) ** 2 <= 1.0


def _heart(p, q):
    hx, hy = 1.15 * p, 1.15 * q + 0.1  # (x² + y² - 1)³ ≤ x² y³, point down
    return (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0


class SpritesDataModule(FactorDataModule):
    """x: (1, image_size, image_size), 0 or 1; factors shape, scale, orientation, position_x,
    position_y. `grid` takes that many evenly spaced values of each factor (a factor left out
    keeps all of its values; grid=null is the full 737,280-image grid)."""

    factor_names = tuple(SIZES)

    def __init__(self, image_size: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size

    def read_grid(self) -> tuple[Tensor, Tensor]:
        kept = subgrid(SIZES, self.grid)
        factors = grid_factors(kept)
        values = [factor_values(n, kept[n][factors[:, k]]) for k, n in enumerate(SIZES)]
        chunks = [
            render(*(v[start : start + 4096] for v in values), size=self.image_size)
            for start in range(0, len(factors), 4096)
        ]
        return self.kept_grid(np.concatenate(chunks).astype(np.uint8) * 255, kept)
