"""p(z) = N(0, I), the prior of the VAE (Kingma & Welling 2014)."""

import torch
from torch import Tensor

from vaelab.models.distributions import DiagonalGaussian
from vaelab.models.priors.base import Prior


class StandardNormal(Prior):
    """N(0, I): no parameters, a closed-form KL against a Gaussian posterior, and draws that
    are the ones vaelab has always drawn (torch.randn with the caller's generator)."""

    factorised = True

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        # Not in the state dict: checkpoints from before priors were modules load as they are.
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("logvar", torch.zeros(latent_dim), persistent=False)

    def distribution(self) -> DiagonalGaussian:
        return DiagonalGaussian(self.loc, self.logvar, standard=True)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, self.latent_dim, generator=generator)
        return z.to(self.loc.device, self.loc.dtype)
