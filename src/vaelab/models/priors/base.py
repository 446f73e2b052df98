"""What a prior p(z) is to a model: a module with `log_prob(z)` and `sample(n)`."""

import torch
from torch import Tensor, nn
from torch.distributions import Distribution


class Prior(nn.Module):
    """p(z) over `latent_dim` dimensions. A prior defines `distribution()`, the torch
    Distribution of p(z) as its parameters stand (a KL against it is closed-form where torch
    registers one for the pair, else estimated from the sample), and where it needs the model
    (a VampPrior encodes its pseudo-inputs), `bind(model)`, called once the model's networks
    exist. `log_prob(z)` takes z of any leading shape (..., latent_dim) and gives (...).
    """

    # p(z) = prod_j p(z_j): a KL per dimension (free bits, val/kl_dimNN) and beta-TCVAE's
    # dimension-wise KL exist only then.
    factorised = False

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    @classmethod
    def check_model(cls, posterior: type, likelihood: str) -> None:
        """Refuse a model's posterior (its class) or likelihood (model.likelihood) that the prior
        cannot work with."""

    def bind(self, model: nn.Module) -> None:
        """Take from the model what the prior is made of (its input shape, its encoder)."""

    def distribution(self) -> Distribution:
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        return self.distribution().log_prob(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws, (n, latent_dim); a generator (on the CPU) of the caller's keeps picture-making
        from moving the training random stream."""
        return self.distribution().sample((n,), generator=generator)

    def rsample(self, n: int) -> Tensor:
        """n reparameterised draws (a gradient flows to the prior's parameters), where the prior
        has them: N(0, I) and Gaussians do, a mixture does not (NotImplementedError)."""
        return self.distribution().rsample((n,))

    @torch.no_grad()
    def traversal_range(self, width: float = 3.0) -> tuple[Tensor, Tensor]:
        """Per dimension, mean ± width standard deviations of p(z_j): where a latent traversal
        sweeps."""
        p = self.distribution()
        mean, std = p.mean.float(), p.variance.float().sqrt()
        return mean - width * std, mean + width * std
