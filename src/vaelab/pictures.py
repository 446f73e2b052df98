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


@torch.no_grad()
def kl_per_dimension(model, x: Tensor, y: Tensor | None = None) -> Tensor | None:
    """The mean KL(q(z_j|x) || p(z_j)) of each latent dimension j over the examples x, where the
    model has one (a VAE with a factorised prior); None otherwise."""
    if not hasattr(model, "kl") or not model.has_prior:
        return None
    q = model.encode(x, y)
    kl_dims = model.kl(q, q.mean).get("kl_dims")
    return None if kl_dims is None else kl_dims.float().mean(0).cpu()


def traversal_figure(model, x: Tensor, steps: int, max_dims: int, kl: Tensor | None = None):
    """`traversals` as a labelled figure, and its rows' names: the `max_dims` dimensions of
    largest KL first (`kl`, one value per dimension, e.g. the last validation's), each row named
    `z3 · 2.41 nats`; in index order, named by dimension alone, where there is no KL. An unused
    dimension's row is constant and its KL ~0."""
    order = None if kl is None else torch.argsort(kl, descending=True)
    images = traversals(model, x, steps, max_dims, order)
    dims = (torch.arange(model.latent_dim) if order is None else order)[:max_dims].tolist()
    names = [f"z{j} · {kl[j]:.2f} nats" if kl is not None else f"z{j}" for j in dims]
    by = "by falling KL" if kl is not None else "in index order"
    return labelled_rows(images, steps, names, f"latent traversals, {by} (-3 to +3 sd)"), names


def labelled_rows(images: Tensor, cols: int, names: list[str], title: str):
    """The grid of `images` (`cols` a row) as a figure, each row named at its left."""
    from matplotlib.figure import Figure

    picture = grid(images, cols)  # make_grid: 2 px of padding before each row and after the last
    _, height, width = picture.shape
    pitch = (height - 2) / len(names)
    dpi = 100
    size = (width / dpi + 1.4, height / dpi + 0.4)
    figure = Figure(figsize=size, dpi=dpi, layout="constrained")
    axes = figure.subplots()
    axes.imshow(picture.permute(1, 2, 0).numpy(), interpolation="nearest")
    axes.set_yticks([2 + pitch * i + (pitch - 2) / 2 for i in range(len(names))], names)
    axes.set_xticks([])
    axes.tick_params(axis="y", length=0, labelsize=8)
    axes.set_title(title, fontsize=8)
    for spine in axes.spines.values():
        spine.set_visible(False)
    return figure


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


ROWS = "Rows"  # a labelled picture's PNG text chunk: its rows' names, one a line


def save_figure(figure, path: Path, rows: list[str] | None = None) -> None:
    """A matplotlib figure as a PNG; the names of its rows, where it has them, in the file's
    metadata too (Image.open(path).text["Rows"]), for whoever reads the picture by program."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={ROWS: "\n".join(rows)} if rows else None)
