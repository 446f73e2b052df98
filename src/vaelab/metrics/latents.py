"""How much of the latent space a VAE uses, accumulated over an evaluation pass.

Both keep sums in their state (summed across processes under DDP) and divide only in `compute`.
"""

import torch
from torch import Tensor
from torchmetrics import Metric


class KLPerDimension(Metric):
    """KL(q(z_j|x) || N(0, 1)) averaged over examples, one value per latent dimension j.

    >>> metric = KLPerDimension(latent_dim=2)
    >>> metric.update(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
    >>> metric.compute()
    tensor([1., 1.])
    """

    full_state_update = False

    def __init__(self, latent_dim: int):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.add_state("total", torch.zeros(latent_dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, kl_per_dim: Tensor) -> None:
        """kl_per_dim: (B, Z)."""
        self.total += kl_per_dim.detach().double().sum(0)
        self.count += kl_per_dim.shape[0]

    def compute(self) -> Tensor:
        return (self.total / self.count).float()


class ActiveUnits(Metric):
    """The number of latent dimensions j with Cov_x(E_q[z_j | x]) > threshold (Burda et al. 2016):
    a dimension whose posterior mean does not move with x carries no information about x.

    >>> metric = ActiveUnits(latent_dim=2)
    >>> metric.update(torch.tensor([[-1.0, 0.0], [1.0, 0.001]]))
    >>> metric.compute()
    tensor(1)
    """

    full_state_update = False

    def __init__(self, latent_dim: int, threshold: float = 0.01):
        super().__init__()
        if latent_dim < 1 or threshold < 0:
            raise ValueError(
                f"need latent_dim >= 1 and threshold >= 0, got {latent_dim}, {threshold}"
            )
        self.threshold = threshold
        zeros = torch.zeros(latent_dim, dtype=torch.float64)
        self.add_state("total", zeros.clone(), dist_reduce_fx="sum")
        self.add_state("total_sq", zeros.clone(), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, mu: Tensor) -> None:
        """mu: the posterior means E_q[z|x], (B, Z)."""
        mu = mu.detach().double()
        self.total += mu.sum(0)
        self.total_sq += mu.pow(2).sum(0)
        self.count += mu.shape[0]

    def variance(self) -> Tensor:
        """Cov_x(E_q[z_j|x]) per dimension, (Z,)."""
        mean = self.total / self.count
        return self.total_sq / self.count - mean.pow(2)

    def compute(self) -> Tensor:
        return (self.variance() > self.threshold).sum()
