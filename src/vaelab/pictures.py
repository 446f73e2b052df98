"""Image grids of what a model does, shared by the image callback and vaelab-sample.

Each function returns images (N, C, H, W) in [0, 1], laid out to be shown `cols` to a row.
"""

from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F
from torchvision.utils import make_grid, save_image


@torch.no_grad()
def reconstructions(model, x: Tensor, cols: int, y: Tensor | None = None) -> Tensor:
    """Each row of originals followed by the row of their reconstructions (means of p(x|x'); of a
    conditional model, given the labels y)."""
    x = x[: len(x) // cols * cols]
    y = None if y is None else y[: len(x)]
    recon = model.reconstruct(x, y).float().clamp(0, 1)
    rows = torch.stack([x.float().unflatten(0, (-1, cols)), recon.unflatten(0, (-1, cols))], 1)
    return rows.flatten(0, 2)


@torch.no_grad()
def traversals(model, x: Tensor, steps: int, max_dims: int, order: Tensor | None = None) -> Tensor:
    """Row j: the posterior mean of x (1 example) with one latent dimension swept over the
    prior's mean ± 3 standard deviations in that dimension ([-3, 3] for N(0, I) and for a model
    without a prior), decoded; the first `max_dims` dimensions, or of `order` (dimension
    indices, e.g. by KL) when given. A row that does not change is an unused dimension."""
    mu = model.embed(x[:1])  # (1, Z)
    dims = (torch.arange(model.latent_dim) if order is None else order)[:max_dims].tolist()
    z = mu.repeat(len(dims) * steps, 1)  # (dims * steps, Z)
    low, high = _sweep(model, z.device)
    t = torch.linspace(0, 1, steps, device=z.device)
    for row, j in enumerate(dims):
        z[row * steps : (row + 1) * steps, j] = low[j] + (high[j] - low[j]) * t
    return model.decode(z).mean.float().clamp(0, 1)


def _sweep(model, device) -> tuple[Tensor, Tensor]:
    """Where a traversal sweeps each latent dimension: the prior's range, else [-3, 3]."""
    prior = getattr(model, "prior", None)
    if prior is None:
        bound = torch.full((model.latent_dim,), 3.0, device=device)
        return -bound, bound
    return tuple(t.to(device) for t in prior.traversal_range(3.0))


@torch.no_grad()
def interpolation(model, x_a: Tensor, x_b: Tensor, steps: int) -> Tensor:
    """The decoded straight line between the posterior means of two examples, ends included."""
    z_a, z_b = model.embed(x_a[:1]), model.embed(x_b[:1])  # (1, Z) each
    t = torch.linspace(0, 1, steps, device=z_a.device, dtype=z_a.dtype)[:, None]
    return model.decode((1 - t) * z_a + t * z_b).mean.float().clamp(0, 1)


def grid(images: Tensor, cols: int) -> Tensor:
    """One (3, H, W) picture; small images (8x8 digits) are enlarged pixel for pixel."""
    scale = max(1, -(-32 // images.shape[-1]))
    images = F.interpolate(images.detach().cpu().float(), scale_factor=scale, mode="nearest")
    return make_grid(images, nrow=cols, pad_value=1.0)


def save(picture: Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(picture, path)
